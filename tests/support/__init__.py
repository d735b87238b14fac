"""Helpers shared by the test folders, and fakes of the outside services the code talks to.

api (the HTTP client of one workspace's key, fresh workspaces), envelope (checks of the
response envelope), data (requests that set up data and read it back), dashboard (a
signed-in dashboard user), cli (the `intently` command in a subprocess), server (`intently
serve` in a subprocess), database (which database the run uses), webhooks (recording
events, driving the dispatcher), vendor_files (vendor export files); fakes: fake_bombora,
fake_g2, fake_linkedin, webhook_receiver."""
