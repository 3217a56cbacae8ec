"""MLflow: tracking runs, registered versions and aliases, promotion, the pyfunc flavour."""
