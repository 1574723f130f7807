"""The Pod-injection admission webhook (``damselfly injector``): sans-IO ``mutation`` and
``patch``, and the thin HTTPS ``server`` over them. See docs/kubernetes.md."""
