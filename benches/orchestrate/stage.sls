{#- Minion side of step 'stage' (pushguide: staging): fetch the WAR into <root>/archives/<v>.war,
    verify its SHA-256 (file.managed fails on a mismatch), unpack it into <root>/releases/<v> next to
    the running release. <root> = <tomcat_dir>/<id>/app, as the Tomcat lab lays it out. -#}
{%- set p = pillar['pgbench'] %}
{%- set root = p['tomcat_dir'] ~ '/' ~ grains['id'] ~ '/app' %}
{%- set war = root ~ '/archives/' ~ p['version'] ~ '.war' %}
{%- set dir = root ~ '/releases/' ~ p['version'] %}
pgbench-fetch:
  file.managed:
    - name: {{ war }}
    - source: {{ p['url'] }}
    - source_hash: sha256={{ p['sha256'] }}
    - makedirs: True

pgbench-unpack:
  module.run:
    - archive.unzip:
      - zip_file: {{ war }}
      - dest: {{ dir }}
    - require:
      - file: pgbench-fetch
