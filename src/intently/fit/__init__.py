"""ICP fit: the workspace's fit model (rules on the company profile), the fit score it gives
and the fit x intent grade."""
