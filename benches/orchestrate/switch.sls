{#- Minion side of step 'switch-N' (pushguide: pre-deploy stop, deploy, post-deploy): stop this
    minion's Tomcat (<tomcat_dir>/<id>/bin/stop), point <base>/webapps/<context> at the new release
    (atomic symlink swap), remove the compiled JSPs (<base>/work/Catalina/localhost/<context>), start
    (bin/start, returns once HTTP answers), probe the health URL until it answers 200 (at most 30 s,
    1 s apart: the pushguide template's [health] settings). -#}
{%- set p = pillar['pgbench'] %}
{%- set id = grains['id'] %}
{%- set inst = p['tomcat_dir'] ~ '/' ~ id %}
{%- set base = inst ~ '/base' %}
{%- set dir = inst ~ '/app/releases/' ~ p['version'] %}
pgbench-stop:
  cmd.run:
    - name: {{ inst }}/bin/stop

pgbench-symlink:
  file.symlink:
    - name: {{ base }}/webapps/{{ p['context'] }}
    - target: {{ dir }}
    - force: True
    - atomic: True
    - require:
      - cmd: pgbench-stop

pgbench-clear-work:
  file.absent:
    - name: {{ base }}/work/Catalina/localhost/{{ p['context'] }}
    - require:
      - file: pgbench-symlink

pgbench-start:
  cmd.run:
    - name: {{ inst }}/bin/start
    - require:
      - file: pgbench-clear-work

pgbench-health:
  http.wait_for_successful_query:
    - name: http://127.0.0.1:{{ p['ports'][id] }}/{{ p['context'] }}/health.html
    - status: 200
    - wait_for: 30
    - request_interval: 1
    - require:
      - cmd: pgbench-start
