"""How Pulse reaches the services it works with: one connection config per service, built once per process from
``PULSE_*`` variables (secrets also from ``*_FILE``), never showing a secret."""
