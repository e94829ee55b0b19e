"""Using the registered model: its wire format and files (``wire``, ``format``), writing it (``writer``), the pyfunc
that predicts (``pyfunc``, logged as ``code``), request parsing and policy (``requests``), predict and evaluate
(``use``), the HTTP server (``server``) and the registry's champion rule (``registry``)."""
