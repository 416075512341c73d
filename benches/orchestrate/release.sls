{#- Orchestrate SLS: the java-tomcat release that pushguide performs, as one state.orchestrate run.
    pillar 'pgbench' (passed by benches/orchestrate/run):
      minions   all target minion ids
      batches   list of lists of minion ids, in rollout order (batch 1 or 2 of `run`)
      version, url, sha256, context, tomcat_dir, ports {id: http port}
    Step 'stage' = pushguide's staging ahead (fetch, verify, unpack on every host at once, while the
    old release serves); step 'switch-N' = pushguide's rolling window for batch N (stop, switch the
    context symlink, clear compiled JSPs, start, health check). A failing step stops the run (failhard
    + require), as pushguide's default failure budget (max_failed = 0) halts. -#}
{%- set p = pillar['pgbench'] %}
stage:
  salt.state:
    - tgt: {{ p['minions'] | join(',') }}
    - tgt_type: list
    - sls: pgbench.stage
    - pillar: {{ {'pgbench': p} | json }}
    - failhard: True
    - expect_minions: True
{%- for group in p['batches'] %}
switch-{{ loop.index }}:
  salt.state:
    - tgt: {{ group | join(',') }}
    - tgt_type: list
    - sls: pgbench.switch
    - pillar: {{ {'pgbench': p} | json }}
    - failhard: True
    - expect_minions: True
    - require:
{%- if loop.first %}
      - salt: stage
{%- else %}
      - salt: switch-{{ loop.index - 1 }}
{%- endif %}
{%- endfor %}
