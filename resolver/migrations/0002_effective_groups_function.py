"""``iam_effective_groups(user, depth)`` replaces ``iam_effective_sources(user, tenant, depth)``.

The lookup now calls the function only for a user in some group (an ``EXISTS`` on the membership
index first, in the lookup's statement), and reads the tenant's rules once per tenant in the
statement itself instead of once per user inside the function: a batch of 50 users of one tenant
read the rules 50 times, and called a set-returning function for every user (docs/performance.md).
"""

import importlib

from django.db import migrations

FUNCTION = """
CREATE OR REPLACE FUNCTION iam_effective_groups(p_user uuid, p_depth integer)
RETURNS text LANGUAGE plpgsql STABLE AS $$
DECLARE
    reached text;
BEGIN
    -- Each row remembers the member group it was reached through; the shallowest row of each group
    -- (ties by that group's key) gives its path, whose steps are then shallowest rows too.
    WITH RECURSIVE reach(group_id, depth, via) AS (
        SELECT m.group_id, 1, NULL::uuid FROM groups_membership m WHERE m.user_id = p_user
        UNION
        SELECT m.group_id, r.depth + 1, r.group_id FROM reach r
        JOIN groups_membership m ON m.child_id = r.group_id
        WHERE r.depth < p_depth
    ), best AS (
        SELECT DISTINCT ON (r.group_id) r.group_id, r.depth, v.key AS via
        FROM reach r LEFT JOIN groups_group v ON v.id = r.via
        ORDER BY r.group_id, r.depth, v.key
    )
    SELECT json_agg(json_build_array(g.key, g.priority, g.attributes, b.depth, b.via, g.version) ORDER BY g.key)::text
    INTO reached FROM best b JOIN groups_group g ON g.id = b.group_id;
    RETURN reached;
END
$$;
DROP FUNCTION IF EXISTS iam_effective_sources(uuid, uuid, integer);
"""

PREVIOUS = importlib.import_module("resolver.migrations.0001_effective_sources_function").FUNCTION


class Migration(migrations.Migration):
    dependencies = [("resolver", "0001_effective_sources_function")]
    operations = [
        migrations.RunSQL(
            FUNCTION, reverse_sql=PREVIOUS + "DROP FUNCTION IF EXISTS iam_effective_groups(uuid, integer);"
        )
    ]
