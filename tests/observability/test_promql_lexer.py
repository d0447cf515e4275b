"""The selector extractor the dashboard and rule checks rely on: it must find what matters."""
from .promql import metric_selectors


def test_functions_keywords_grouping_and_ranges_are_not_metrics():
    expr = ('histogram_quantile(0.99, sum by (le, provider) (rate(ddetect_webhook_request_duration_seconds_bucket'
            '{provider=~"$provider"}[$__rate_interval]))) > 5e-3 offset 1h')
    assert metric_selectors(expr) == [("ddetect_webhook_request_duration_seconds_bucket", ("provider",))]


def test_binary_operators_and_vector_matching():
    expr = ('(sum(rate(a_total[5m])) or vector(0)) == 0 and on () up{job="ddetect-worker", instance!="x"} == bool 1'
            ' / ignoring(type) group_left b:rec:rate5m')
    assert metric_selectors(expr) == [("a_total", ()), ("up", ("job", "instance")), ("b:rec:rate5m", ())]


def test_strings_cannot_smuggle_names_and_misspellings_are_reported():
    assert metric_selectors('sum(ddetect_alerts_activ{rule="sum(foo_total)"})') == \
        [("ddetect_alerts_activ", ("rule",))]
