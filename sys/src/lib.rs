//! Raw bindings to the Linux DVB API v5 headers. Filled in by `sys/regen.sh`.
