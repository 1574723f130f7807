"""One node, one file over loopback: dfget (standalone and through a dfdaemon) side by side with
curl, aria2c and huggingface_hub."""
