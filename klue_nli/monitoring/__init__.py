"""Watching the served champion from outside the service: its answers read from the service's
/metrics against the dev profile its version recorded (drift_check.py), a drift posted to the
team's webhook (webhook.py)."""
