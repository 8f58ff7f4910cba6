"""Helper services: processes started in dependency order, health-checked and restarted."""
