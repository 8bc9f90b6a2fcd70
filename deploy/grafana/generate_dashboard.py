#!/usr/bin/env python3
"""Generates deploy/grafana/distilrec.json (the dashboard is code; edit here, then run this).

    python3 deploy/grafana/generate_dashboard.py > deploy/grafana/distilrec.json

deploy/check.sh fails if the committed JSON differs from this script's output.
"""
import json
import sys
DS = {"type": "prometheus", "uid": "${datasource}"}
SEL = 'job=~"$job", instance=~"$instance"'
panels = []
pid = [0]
def nid():
    pid[0] += 1; return pid[0]
def row(title, y):
    panels.append({"type": "row", "title": title, "id": nid(), "collapsed": False,
                   "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []})
def target(expr, legend, ref, instant=False, fmt="time_series"):
    t = {"datasource": DS, "expr": expr, "legendFormat": legend, "refId": ref, "range": not instant, "instant": instant}
    if fmt != "time_series": t["format"] = fmt
    return t
def ts(title, desc, targets, unit, x, y, w=12, h=8, extra=None):
    p = {"type": "timeseries", "title": title, "description": desc, "id": nid(), "datasource": DS,
         "gridPos": {"h": h, "w": w, "x": x, "y": y},
         "fieldConfig": {"defaults": {"unit": unit, "custom": {"lineWidth": 1, "fillOpacity": 10, "showPoints": "never"}}, "overrides": []},
         "options": {"legend": {"displayMode": "table", "placement": "bottom", "calcs": ["lastNotNull", "max"]}, "tooltip": {"mode": "multi", "sort": "desc"}},
         "targets": [target(e, l, chr(65 + i)) for i, (e, l) in enumerate(targets)]}
    if extra: p.update(extra)
    panels.append(p)
def stat(title, desc, expr, legend, unit, x, y, w=6, h=4, thresholds=None, decimals=None):
    d = {"unit": unit}
    if thresholds: d["thresholds"] = {"mode": "absolute", "steps": thresholds}
    if decimals is not None: d["decimals"] = decimals
    panels.append({"type": "stat", "title": title, "description": desc, "id": nid(), "datasource": DS,
                   "gridPos": {"h": h, "w": w, "x": x, "y": y},
                   "fieldConfig": {"defaults": d, "overrides": []},
                   "options": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}, "colorMode": "value", "graphMode": "area", "textMode": "auto"},
                   "targets": [target(expr, legend, "A")]})

y = 0
row("Overview", y); y += 1
stat("Request rate (API)", "Requests per second to the API routes (probes and scrapes excluded), all instances of the job.",
     'sum(job:distilrec_http_requests:rate1m{job=~"$job"})', "", "reqps", 0, y)
stat("p99 latency /recommend", "99th percentile of the server-side /recommend latency over 1 minute (recording rule).",
     'max(job_route:distilrec_http_request_duration_seconds:p99_1m{job=~"$job", route="/recommend"})', "", "s", 6, y,
     thresholds=[{"color": "green", "value": None}, {"color": "orange", "value": 0.01}, {"color": "red", "value": 0.05}])
stat("5xx ratio", "Share of API requests answered with a 5xx status (503 = overloaded or not ready).",
     'max(job:distilrec_http_requests_5xx:ratio_rate1m{job=~"$job"})', "", "percentunit", 12, y,
     thresholds=[{"color": "green", "value": None}, {"color": "red", "value": 0.01}])
stat("Instances up", "Scrape targets of the job that answer.",
     f'sum(up{{{SEL}}})', "", "none", 18, y, decimals=0)
y += 4
panels.append({"type": "table", "title": "Live model versions", "id": nid(), "datasource": DS,
               "description": "The version each instance serves per model (distilrec_model_live_info == 1). Different versions of one model on different instances for long = a rollout that did not reach every replica.",
               "gridPos": {"h": 6, "w": 24, "x": 0, "y": y},
               "fieldConfig": {"defaults": {}, "overrides": []},
               "options": {"showHeader": True},
               "transformations": [{"id": "organize", "options": {"excludeByName": {"Time": True, "Value": True}, "indexByName": {"model": 0, "version": 1, "instance": 2}}}],
               "targets": [target(f'max by (model, version, instance) (distilrec_model_live_info{{{SEL}}} == 1)', "", "A", instant=True, fmt="table")]})
y += 6
row("Latency", y); y += 1
ts("/recommend latency percentiles", "Server-side latency of /recommend (request received → response written), fleet-wide, from the recording rules.",
   [('job_route:distilrec_http_request_duration_seconds:p50_1m{job=~"$job", route="/recommend"}', "p50"),
    ('job_route:distilrec_http_request_duration_seconds:p90_1m{job=~"$job", route="/recommend"}', "p90"),
    ('job_route:distilrec_http_request_duration_seconds:p99_1m{job=~"$job", route="/recommend"}', "p99")], "s", 0, y)
ts("Queue time vs inference time (p99)", "Where the time goes: waiting in the batcher queue vs running the model on a batch. Queue time growing while inference time is flat = not enough capacity.",
   [(f'histogram_quantile(0.99, sum by (le) (rate(distilrec_queue_duration_seconds_bucket{{{SEL}}}[$__rate_interval])))', "queue p99"),
    (f'histogram_quantile(0.99, sum by (le) (rate(distilrec_inference_duration_seconds_bucket{{{SEL}}}[$__rate_interval])))', "inference p99"),
    (f'histogram_quantile(0.50, sum by (le) (rate(distilrec_queue_duration_seconds_bucket{{{SEL}}}[$__rate_interval])))', "queue p50"),
    (f'histogram_quantile(0.50, sum by (le) (rate(distilrec_inference_duration_seconds_bucket{{{SEL}}}[$__rate_interval])))', "inference p50")], "s", 12, y)
y += 8
ts("p99 latency per instance", "One slow instance stands out here before it moves the fleet-wide percentile.",
   [(f'histogram_quantile(0.99, sum by (instance, le) (rate(distilrec_http_request_duration_seconds_bucket{{{SEL}, route="/recommend"}}[$__rate_interval])))', "{{instance}}")], "s", 0, y, w=24)
y += 8
row("Traffic and errors", y); y += 1
ts("Throughput by route and status", "Requests per second by route template and HTTP status.",
   [(f'sum by (route, status) (rate(distilrec_http_requests_total{{{SEL}}}[$__rate_interval]))', "{{route}} {{status}}")], "reqps", 0, y)
ts("Errors and shed load", "5xx ratio of the API routes; requests refused by admission control (429/503 on /recommend) per second; requests dropped before inference because the client had gone (client timeouts shorter than the server latency).",
   [('job:distilrec_http_requests_5xx:ratio_rate1m{job=~"$job"}', "5xx ratio"),
    ('job:distilrec_http_requests_shed:rate1m{job=~"$job"}', "shed req/s"),
    (f'sum(rate(distilrec_cancelled_requests_total{{{SEL}}}[$__rate_interval]))', "client gone req/s")], "short", 12, y,
   extra={"fieldConfig": {"defaults": {"unit": "short", "custom": {"lineWidth": 1, "fillOpacity": 10, "showPoints": "never"}},
                          "overrides": [{"matcher": {"id": "byName", "options": "5xx ratio"}, "properties": [{"id": "unit", "value": "percentunit"}]},
                                        {"matcher": {"id": "byName", "options": "shed req/s"}, "properties": [{"id": "unit", "value": "reqps"}]},
                                        {"matcher": {"id": "byName", "options": "client gone req/s"}, "properties": [{"id": "unit", "value": "reqps"}]}]}})
y += 8
ts("Unknown items skipped", "History item ids the live model does not know, skipped per second. A jump after a rollout = the new vocabulary lost items clients still send.",
   [(f'sum(rate(distilrec_unknown_items_total{{{SEL}}}[$__rate_interval]))', "unknown items/s")], "short", 0, y, w=24, h=6)
y += 6
row("Batching", y); y += 1
ts("Batch size", "Requests per model call: mean, and the p50/p99 of the batch size histogram. Batches grow with load; a mean near 1 at high load means the queue delay is too short to batch.",
   [('job:distilrec_batch_size:mean_1m{job=~"$job"}', "mean"),
    (f'histogram_quantile(0.50, sum by (le) (rate(distilrec_batch_size_bucket{{{SEL}}}[$__rate_interval])))', "p50"),
    (f'histogram_quantile(0.99, sum by (le) (rate(distilrec_batch_size_bucket{{{SEL}}}[$__rate_interval])))', "p99")], "short", 0, y)
ts("Queue depth", "Requests waiting for a model call, per instance and model. Near the configured bound = about to shed load.",
   [(f'max by (instance, model) (distilrec_queue_depth{{{SEL}}})', "{{instance}} {{model}}")], "short", 12, y)
y += 8
row("Model reloads", y); y += 1
ts("Model loads by result", "Model version load attempts (poll or admin API) per 5 minutes, by model and result. Failed loads leave the previous version serving.",
   [(f'sum by (model, result) (increase(distilrec_model_load_total{{{SEL}}}[5m]))', "{{model}} {{result}}")], "short", 0, y,
   extra={"fieldConfig": {"defaults": {"unit": "short", "custom": {"drawStyle": "bars", "lineWidth": 1, "fillOpacity": 60, "showPoints": "never"}}, "overrides": []}})
ts("Reload duration", "Time to load, check and warm up a new version before it is swapped in (off the request path).",
   [(f'histogram_quantile(0.99, sum by (le) (rate(distilrec_model_reload_duration_seconds_bucket{{{SEL}}}[5m])))', "p99"),
    (f'histogram_quantile(0.50, sum by (le) (rate(distilrec_model_reload_duration_seconds_bucket{{{SEL}}}[5m])))', "p50")], "s", 12, y)
y += 8
ts("Model versions in memory", "Versions held per model and instance: the live one plus any still used by in-flight requests. Should return to 1 right after every swap; a staircase means old versions are not released (memory growth across reloads).",
   [(f'max by (instance, model) (distilrec_model_instances{{{SEL}}})', "{{instance}} {{model}}")], "short", 0, y, w=24, h=6)
y += 6

dash = {
    
    "annotations": {"list": [
        {"builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"}, "enable": True, "hide": True, "iconColor": "rgba(0, 211, 255, 1)", "name": "Annotations & Alerts", "type": "dashboard"},
        {"datasource": DS, "enable": True, "iconColor": "purple", "name": "Model version swapped in",
         "expr": f'sum by (model, instance) (increase(distilrec_model_load_total{{{SEL}, result="ok"}}[1m])) > 0',
         "step": "30s", "titleFormat": "model {{model}} loaded", "textFormat": "{{instance}}", "useValueForTime": False}]},
    "description": "distilrec: latency, throughput, errors, batching and model rollouts (deploy/grafana/distilrec.json; see docs/operations.md).",
    "editable": True, "graphTooltip": 1, "id": None, "links": [], "panels": panels,
    "refresh": "30s", "schemaVersion": 39, "tags": ["distilrec"],
    "templating": {"list": [
        {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus", "current": {}, "hide": 0, "refresh": 1, "regex": "", "includeAll": False, "multi": False, "options": []},
        {"name": "job", "label": "Job", "type": "query", "datasource": DS, "query": {"query": "label_values(distilrec_http_requests_total, job)", "refId": "job"},
         "definition": "label_values(distilrec_http_requests_total, job)", "current": {}, "hide": 0, "refresh": 2, "includeAll": False, "multi": False, "sort": 1, "options": []},
        {"name": "instance", "label": "Instance", "type": "query", "datasource": DS, "query": {"query": 'label_values(distilrec_http_requests_total{job=~"$job"}, instance)', "refId": "instance"},
         "definition": 'label_values(distilrec_http_requests_total{job=~"$job"}, instance)', "current": {}, "hide": 0, "refresh": 2, "includeAll": True, "allValue": ".*", "multi": True, "sort": 1, "options": []}]},
    "time": {"from": "now-1h", "to": "now"}, "timepicker": {}, "timezone": "", "title": "distilrec", "uid": "distilrec", "version": 1, "weekStart": ""}
json.dump(dash, sys.stdout, indent=2)
sys.stdout.write("\n")
