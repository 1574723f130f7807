"""Cluster PKI and mutual TLS (docs/security.md).

Sits just above ``config``: it imports ``core`` and ``config`` only, so every service and
transport can use it. ``ca`` and ``certs`` make and read certificates, ``roles`` says what a
certificate's role may do, ``tls`` builds TLS contexts and gRPC credentials, ``enrollment`` and
``renewal`` get a node its certificate and keep it fresh.
"""
