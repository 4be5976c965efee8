"""The web dashboard (``qwen-meter dashboard``, the gateway's ``/ui``): one JSON API over the
report's DuckDB engine and one page that draws it; the static HTML report is a snapshot of it."""
