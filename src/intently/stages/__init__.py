"""Journey stages: rule-defined stages per workspace, and every change of stage."""
