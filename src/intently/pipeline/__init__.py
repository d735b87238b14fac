"""The pipeline (L4): the one place that sequences several domains.

Scoring writes scores and knows nothing else. What a score change sets off happens
here, in this order, inside each scored batch's write transaction (so a batch and all
it causes commit or roll back together):

1. **Thresholds**: an account whose score crossed a workspace threshold gets a
   `score.threshold_crossed` event. First, because it reads only the scores just
   written, old and new.
2. **Stages**: the batch's accounts are placed on the journey. After the scores,
   because stage rules read them (in this transaction); a move records `stage.changed`.
3. **Journey days**: the day's score and stage of every account that changed in 1-2.
   After the stages, so the day's row holds the stage just placed.
4. **Segments**: for a run over few accounts, dynamic segments are refreshed for the
   batch's accounts; a run over many refreshes every segment once, set-wise, after its
   last batch (cheaper than asking every segment about every batch). Last, because
   segment rules may read scores and stages.
5. **Events and destinations**: every step above records its events through the
   outbox in the same transaction; webhook deliveries are sent only after commit.

Everything that runs scoring (the worker, the CLI, the API, the dashboard and the demo)
calls `run_scoring`, `run_claimed` or `run_part` here, never scoring's own.
"""

from intently.pipeline.scoring import (
    AfterScoring,
    resume_parts,
    run_claimed,
    run_part,
    run_scoring,
)

__all__ = ["AfterScoring", "resume_parts", "run_claimed", "run_part", "run_scoring"]
