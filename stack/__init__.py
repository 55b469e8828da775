"""The background stacks of ``make up`` / ``make down``, run by supervisord.

supervisord configs, the cluster's ports and environment, readiness checks and PostgreSQL. The
stack starts ``milkprice ...`` commands as processes: it never imports :mod:`orchestration`.
"""
