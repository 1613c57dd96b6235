"""``iam_effective_sources(user, tenant, depth)``: what a user inherits, for the PIP's one statement.

A PL/pgSQL function so that PostgreSQL plans its recursive query once per connection (PL/pgSQL caches
its statements' plans): written inline, the lookup's statement took ~30 times longer to plan than to
run. A user in no group costs one index probe (the EXISTS) before the recursive query is skipped.
"""

from django.db import migrations

FUNCTION = """
CREATE OR REPLACE FUNCTION iam_effective_sources(p_user uuid, p_tenant uuid, p_depth integer)
RETURNS TABLE (groups text, rules text) LANGUAGE plpgsql STABLE AS $$
BEGIN
    groups := NULL;
    IF EXISTS (SELECT 1 FROM groups_membership WHERE user_id = p_user) THEN
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
        INTO groups FROM best b JOIN groups_group g ON g.id = b.group_id;
    END IF;
    SELECT json_agg(json_build_array(d.key, d."default", d.merge) ORDER BY d.key)::text INTO rules
    FROM attributes_attributedefinition d
    WHERE d.tenant_id = p_tenant AND (d."default" IS NOT NULL OR d.merge = 'union');
    RETURN NEXT;
END
$$;
"""


class Migration(migrations.Migration):
    dependencies = [("groups", "0001_initial"), ("attributes", "0003_definition_default_merge_group_target")]
    operations = [
        migrations.RunSQL(FUNCTION, reverse_sql="DROP FUNCTION IF EXISTS iam_effective_sources(uuid, uuid, integer)")
    ]
