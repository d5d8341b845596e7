"""Running the daemon: logs, metrics, health, systemd notify, the doctor."""
