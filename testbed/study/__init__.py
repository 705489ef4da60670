"""`testbed sweep`: a study of scenarios over axes of scenario fields and seeds, trained cell by cell and analysed together."""
