"""OpenAPI 3.1 for the app's HTTP routes (``utils.get_openapi``) and the offline docs pages
(``docs``). Nothing is imported here, so the security helpers can use ``models`` without
loading the routing."""
