"""The Scoring page's predictive model: a button that trains in the worker, the last
trainings' reports, and Activate (refused when worse unless forced)."""

from __future__ import annotations

import re

from tests.support.dashboard import Dashboard
from tests.support.predict import build_world


def test_train_from_the_scoring_page_and_activate(
    admin: Dashboard, engine: object, jobs: None
) -> None:
    page = admin.get("/app/scoring")
    assert (
        page.status_code == 200 and "Train a model" in page.text and "No training yet" in page.text
    )
    build_world(admin.ws.api, engine, admin.ws.id, accounts=700, seed=5, prefix="dash")
    r = admin.post("/app/scoring/train", {"horizon": "90"})
    assert r.status_code == 303, r.text[:300]
    assert r.headers["location"].startswith("/app/scoring?training=")
    page = admin.get(r.headers["location"])
    assert page.status_code == 200
    assert "is done: model version 1 stored" in page.text, page.text[-3000:]
    assert re.search(r"<td>0\.\d+ / 0\.\d+</td>", page.text)  # AUC trained / active
    assert 'name="version" value="1"' in page.text
    r = admin.post("/app/scoring/activate", {"version": "1"})
    assert r.status_code == 303 and r.headers["location"].startswith("/app/scoring?activated=1")
    assert admin.ws.api.get("/scoring/model").json()["data"]["version"] == 1
    page = admin.get("/app/scoring").text
    assert "(active)" in page and "Roll back to version" in page
    # the model editor still edits the sources of a trained model (saving drops the predictor)
    assert admin.get("/app/scoring/model").status_code == 200
    # back to the default: worse on the hold-out, so refused, with both figures
    r = admin.post("/app/scoring/activate", {"version": "0"})
    assert r.status_code == 409 and "ROC AUC" in r.text
    assert admin.ws.api.get("/scoring/model").json()["data"]["version"] == 1
    r = admin.post("/app/scoring/activate", {"version": "0", "force": "1"})
    assert r.status_code == 303
    assert admin.ws.api.get("/scoring/model").json()["data"]["version"] == 2


def test_bad_training_input_is_shown(admin: Dashboard) -> None:
    r = admin.post("/app/scoring/train", {"horizon": "abc"})
    assert r.status_code == 400 and "must be a number of days" in r.text
    r = admin.post("/app/scoring/train", {"horizon": "3"})
    assert r.status_code == 400 and "must be from 7 to 365" in r.text
    r = admin.post("/app/scoring/activate", {"version": "7"})
    assert r.status_code == 404 and "not found" in r.text
