"""Studies: a study file's cells (scenario fields × values) on many seeds, trained through the
run store by a local or Ray executor, analysed into sweep.csv, figures and a report."""
