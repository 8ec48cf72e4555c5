"""file_manager: the wheel store under <WWW>/simple and its ``files`` rows."""
