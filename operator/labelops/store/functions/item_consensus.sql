-- item_consensus: the leading answer (labels.answer) among an item's counted human
-- labels and its posterior under the one-coin model (labelops.quality.posterior): each labeler is right with their
-- estimated accuracy a, else picks one of the other K - 1 answers at random; flat prior.
-- A vote weighs log(a (K - 1) / (1 - a)); the posterior of an answer is the softmax of the
-- weight sums, answers nobody gave scoring 0. a is the Beta(2, 1)-smoothed share of gold
-- answers right and agreements with consensus, clamped to [1/K, 0.99], as
-- labelops.quality.posterior.labeler_accuracy computes it (a unit test compares the two).
-- Ties go to the answer with more votes, then to the smaller value (jsonb order).
CREATE OR REPLACE FUNCTION item_consensus(p_item bigint, p_num_classes integer)
RETURNS TABLE (value jsonb, posterior double precision, labels integer)
LANGUAGE plpgsql STABLE
SET search_path FROM CURRENT
AS $$
BEGIN
    RETURN QUERY
    WITH votes AS (
        SELECT l.answer AS v, count(*)::integer AS n,
               sum(ln(a.acc * (p_num_classes - 1) / (1 - a.acc))) AS w
        FROM labels l
        LEFT JOIN labeler_quality q ON q.labeler = l.labeler
        CROSS JOIN LATERAL (
            SELECT least(0.99, greatest(1.0 / p_num_classes,
                (2 + coalesce(q.gold_correct, 0) + coalesce(q.agreements, 0))::float8
                / (3 + coalesce(q.gold_answers, 0) + coalesce(q.agreement_total, 0)))) AS acc
        ) a
        WHERE l.item_id = p_item AND l.status = 'counted' AND l.origin = 'human'
          AND l.answer IS NOT NULL
        GROUP BY l.answer
    ), scaled AS (
        SELECT v.v, v.n, v.w,
               greatest(max(v.w) OVER (),
                        CASE WHEN count(*) OVER () < p_num_classes THEN 0 END) AS top,
               p_num_classes - count(*) OVER () AS unseen,
               sum(v.n) OVER ()::integer AS total
        FROM votes v
    )
    SELECT s.v,
           exp(s.w - s.top)
           / (sum(exp(s.w - s.top)) OVER () + s.unseen * exp(-s.top)),
           s.total
    FROM scaled s
    ORDER BY s.w DESC, s.n DESC, s.v
    LIMIT 1;
END
$$;
