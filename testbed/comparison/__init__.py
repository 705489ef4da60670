"""`testbed compare`: paired multi-seed comparison of scenarios, with statistics and a report."""
