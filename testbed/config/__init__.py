"""Configuration: what a scenario is and how it is read, importing only `testbed.plugin_api`
and `testbed.errors` (the engine and run directories add their own checks, see
`testbed.rundir.scenarios`).

- `schema`: the scenario's classes (`Scenario`, `TaskConfig`, `ModelConfig`, ...);
- `plugin_ref`: plugin fields (`PluginRef`), validated by the registry's plugins;
- `seeds`: seed specifications ('0-99', '0,3,7');
- `yaml_io`: scenario files read and written;
- `checks`: checks across fields; `scenario_curriculum`: a scenario's curriculum;
- `overrides`: `--set` overrides; `validation_errors`: one line per problem;
- `scenario`: validate, load and revise a scenario (and the names callers import).
"""
