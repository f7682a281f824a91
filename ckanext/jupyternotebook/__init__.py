"""CKAN plugin: open any dataset as a live Jupyter notebook."""
