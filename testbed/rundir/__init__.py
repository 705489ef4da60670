"""A run is a directory: the one writer (staged, renamed into place when complete), the summary,
where the run came from (run.json), the curves figure, and the one reader that the API,
`compare` and `render` all use."""
