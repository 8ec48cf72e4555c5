"""piw-builder: runs on each Raspberry Pi; never imports the server's database code."""
