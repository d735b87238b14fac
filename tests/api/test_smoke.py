from tests.support.api import Api


def test_push_then_list(api: Api) -> None:
    r = api.post(
        "/accounts", json={"accounts": [{"domain": "https://www.Acme.com/x", "name": "Acme"}]}
    )
    assert r.status_code == 200, r.text
    assert r.json()["data"]["results"][0]["status"] == "created"
    page = api.get("/accounts").json()["data"]
    assert [a["domain"] for a in page["data"]] == ["acme.com"]
