"""The typed expressions' planner cost: 1000 (PostgreSQL's default for a function is 100).

A first page of a search, newest first, can be planned two ways: walk the tenant's rows in
``created_at`` order and evaluate the condition on each until 51 match, or read the matches through
the key's index and sort them. PostgreSQL picks by the rows it expects to evaluate the condition on;
at cost 100 it rated a walk over ~10,000 rows cheaper than reading ~1,000 matches for an equality on
a 200,000-user tenant and took 50 ms where the index takes 2 (docs/performance.md, "A quiet run at
200,000"). At cost 1000 the walk is taken only where matches are common (it then stops after a few
dozen rows), as it should be. A cost changes no result and rewrites nothing: it only weighs plans.
"""

from django.db import migrations

FUNCTIONS = ("iam_attr_numeric", "iam_attr_date", "iam_attr_timestamptz")


def _cost(cost: int) -> str:
    return "\n".join(f"ALTER FUNCTION {name}(jsonb) COST {cost};" for name in FUNCTIONS)


class Migration(migrations.Migration):
    dependencies = [("attributes", "0003_definition_default_merge_group_target")]

    operations = [migrations.RunSQL(_cost(1000), _cost(100))]
