"""GraphQL at ``/admin/graphql``: read-only queries over keys, teams, usage rollups and logs.

* :mod:`.schema` — the SDL (the types a client sees) and its binding to resolvers;
* :mod:`.resolvers` — one function per field that is not a plain value, over the same data
  functions as the REST admin API (:mod:`fluxway.api.admin_queries`, :mod:`fluxway.policy.accounts`);
* :mod:`.pagination` — cursor connections (``first``/``after``, ``pageInfo``);
* :mod:`.limits` — depth and cost of a query, checked before it runs;
* :mod:`.errors` — errors in GraphQL's shape with a ``code``, internal details never shown;
* :mod:`.endpoint` — the HTTP side: GET and POST requests, status codes.

graphql-core is imported only here, and this package only on the first request to
``/admin/graphql``.
"""
