"""Reports (issue 14): notebooks run headless with parameters, on a schedule
or when the dataset's data changes, publishing what they produce on the
dataset.

- ``model``: the ``jupyternotebook_report`` and ``jupyternotebook_report_run``
  tables;
- ``schedule``: cron expressions and time zones;
- ``logic``: the actions and their auth functions;
- ``jobs``: the background job that runs a report through the bridge;
- ``publish``: a finished run's notebook and artifacts, published on the
  dataset;
- ``history``: how a run ended (failed, cancelled, succeeded) in its record;
- ``scheduler``: fires due schedules, once per period, from any number of
  processes;
- ``triggers``: "run when the data changes";
- ``views``: the report page of a notebook resource.
"""
