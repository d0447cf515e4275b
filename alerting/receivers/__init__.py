"""One module per on-call channel. Each exposes a ``Notifier`` subclass; :mod:`.registry` builds them from config."""
