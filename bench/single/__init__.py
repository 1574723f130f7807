"""One node, one file over loopback: dfget (standalone) side by side with curl and aria2c."""
