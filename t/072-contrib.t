# contrib/: the Grafana dashboard and the Prometheus alert rules.  Both
# files parse, have the structure Grafana and Prometheus expect, and every
# cache_guard_* series, label and label value their queries name is one that
# the live exposition of a fully configured nginx (a zone, Redis with its
# INFO read, a Bloom filter) exports.  promtool checks the rules when
# Debian's prometheus package is installed.
use lib 't/lib';
use Test::CacheGuard 'no_plan';
use Test::CacheGuard::Preset;
use Test::CacheGuard::Util qw(slurp);
use Test::CacheGuard::Prom;

use JSON::PP qw(decode_json);
use List::Util qw(first);

our $YAML = eval { require YAML::XS; 1 };

guard_preamble(
    zone        => '4m',
    redis       => 'timeout=1s',
    http_config => "    cache_guard_bloom users capacity=1000 error_rate=0.01 mode=shadow;\n",
    upstream    => 1,
    config      => <<'CONF' . guard_location(path => '~ ^/u/(\d+)$', policy => 'users.lua', x_guard => undef),
    location = /metrics {
        cache_guard_metrics;
    }
CONF
    user_files  => <<'FILES',
>>> users.lua
return { key = "$uri", bloom = { filter = "users", item = "$1" } }
FILES
);

sub contrib { return "$ENV{TEST_NGINX_ROOT}/contrib/$_[0]" }

sub dashboard { return decode_json(slurp(contrib('grafana-dashboard.json'))) }

sub rules { return YAML::XS::LoadFile(contrib('prometheus-alerts.yml')) }

# The panels, rows' nested panels included.
sub panels {
    my ($d) = @_;
    return map { ($_, @{$_->{panels} // []}) } @{$d->{panels}};
}

# [where, PromQL] of every query of the dashboard (panels and variables).
sub dashboard_queries {
    my ($d) = @_;
    my @q;
    for my $p (panels($d)) {
        push @q, map { ["panel \"$p->{title}\" $_->{refId}", $_->{expr}] }
                 @{$p->{targets} // []};
    }
    for my $v (@{$d->{templating}{list}}) {
        next unless $v->{type} eq 'query';
        my $q = ref $v->{query} ? $v->{query}{query} : $v->{query};
        push @q, ["variable \$$v->{name}", $q];
    }
    return @q;
}

sub rule_queries {
    my ($r) = @_;
    return map { my $g = $_; map { ["rule $_->{alert}", $_->{expr}] } @{$g->{rules}} }
           @{$r->{groups}};
}

# The problems of the queries against a parsed exposition: unknown series,
# labels or label values, unbalanced brackets or quotes.
sub query_problems {
    my ($m, @queries) = @_;
    my (%labels, @problems);
    for my $f (values %{$m->{families}}) {
        for my $s (@{$f->{samples}}) {
            $labels{$s->{name}}{$_}{$s->{labels}{$_}} = 1 for keys %{$s->{labels}};
            $labels{$s->{name}} //= {};
        }
    }
    # labels Prometheus adds to every series it scrapes
    my %target = map { ($_ => 1) } qw(instance job);
    for my $q (@queries) {
        my ($where, $expr) = @$q;
        my $bad = sub { push @problems, "$where: $_[0]" };
        my @names = $expr =~ /\b(cache_guard_[a-zA-Z0-9_:]*)/g;
        $bad->('names no cache_guard_ metric') unless @names;
        for my $name (@names) {
            my $family = $m->{families}{$name} ? $name
                       : $name =~ s/_(?:bucket|sum|count)$//r;
            $bad->("$name: no such family ($family) in the exposition")
                unless $m->{families}{$family};
            $bad->("$name: no such series in the exposition")
                unless $labels{$name};
        }
        while ($expr =~ /\b(cache_guard_[a-zA-Z0-9_:]*)\s*\{([^}]*)\}/g) {
            my ($name, $selector) = ($1, $2);
            while ($selector =~ /([a-zA-Z_]\w*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"/g) {
                my ($label, $op, $value) = ($1, $2, $3);
                next if $target{$label};
                unless ($labels{$name}{$label}) {
                    $bad->("$name has no label $label");
                    next;
                }
                next if $value =~ /\$/;    # a dashboard variable
                next unless $value =~ /^[\w:.+-]+(?:\|[\w:.+-]+)*$/;
                $labels{$name}{$label}{$_} or $bad->("$name\{$label=\"$_\"} is never exported")
                    for split /\|/, $value;
            }
        }
        while ($expr =~ /\b(?:by|without)\s*\(([^)]*)\)/g) {
            for my $label (grep { length } split /[\s,]+/, $1) {
                next if $target{$label};
                $bad->("by ($label): none of its series has that label")
                    unless grep { $labels{$_}{$label} } @names;
            }
        }
        while ($expr =~ /\blabel_values\(\s*(cache_guard_\w+)[^,]*,\s*(\w+)\s*\)/g) {
            $bad->("label_values: $1 has no label $2")
                unless $target{$2} || $labels{$1}{$2};
        }
        (my $bare = $expr) =~ s/"(?:[^"\\]|\\.)*"//g;
        $bad->('an unbalanced quote') if $bare =~ /"/;
        for my $pair (['(', ')'], ['{', '}'], ['[', ']']) {
            my ($open, $close) = map { scalar(() = $bare =~ /\Q$_\E/g) } @$pair;
            $bad->("unbalanced $pair->[0]$pair->[1]") unless $open == $close;
        }
    }
    return @problems;
}

# The exposition once Redis' INFO was read (all families present).
sub full_metrics {
    my $m;
    wait_for(sub {
        $m = prom_parse(http_get('/metrics')->{body});
        return $m->{families}{cache_guard_redis_used_memory_bytes};
    }, 15, 'Redis INFO in the exposition');
    return $m;
}

run_tests();

__DATA__

=== TEST 1: the dashboard: Grafana's JSON model, the datasource a variable, a policy variable, the panels asked for
--- check
my $d = dashboard();
ok($d->{schemaVersion} >= 36 && $d->{schemaVersion} <= 39, "schemaVersion $d->{schemaVersion}");
ok(length $d->{title} && length $d->{uid}, 'a title and a uid');
my %vars = map { ($_->{name} => $_) } @{$d->{templating}{list}};
is($vars{DS_PROMETHEUS}{type}, 'datasource', 'DS_PROMETHEUS is a datasource variable');
is($vars{DS_PROMETHEUS}{query}, 'prometheus', 'of Prometheus');
is($vars{policy}{type}, 'query', 'a policy variable');
like(ref $vars{policy}{query} ? $vars{policy}{query}{query} : $vars{policy}{query},
     qr/^label_values\(cache_guard_requests_total\b.*,\s*policy\)$/, 'listing the policies');
ok($vars{policy}{multi} && $vars{policy}{includeAll}, 'several or all of them');

my @panels = grep { $_->{type} ne 'row' } panels($d);
my %ids;
$ids{$_->{id}}++ for panels($d);
is_deeply([grep { $ids{$_} > 1 } sort keys %ids], [], 'panel ids are unique');
is_deeply([map { $_->{title} } grep {
              my $p = $_;
              ($p->{datasource}{uid} // '') ne '${DS_PROMETHEUS}'
              || grep { ($_->{datasource}{uid} // '') ne '${DS_PROMETHEUS}' } @{$p->{targets}}
          } @panels], [], 'every panel and query uses ${DS_PROMETHEUS}');
is_deeply([map { $_->{title} } grep { !@{$_->{targets} // []}
              || grep { !length($_->{expr} // '') || !length($_->{refId} // '') } @{$_->{targets}}
          } @panels], [], 'every panel has queries, each with an expr and a refId');
is_deeply([map { $_->{title} } grep {
              my $g = $_->{gridPos};
              !$g || $g->{x} < 0 || $g->{w} < 1 || $g->{x} + $g->{w} > 24 || $g->{h} < 1
          } panels($d)], [], 'every panel within the 24-column grid');
is_deeply([map { $_->{title} } grep {
              !grep { $_->{expr} =~ /\$policy/ } @{$_->{targets}}
          } grep { grep { $_->{expr} =~ /\{[^}]*\bpolicy\b|by \([^)]*\bpolicy\b/ } @{$_->{targets}} } @panels],
          [], 'every panel about policies follows $policy');

my %want = (
    'hit ratio per policy'      => qr/hit ratio/i,
    'request rate by status'    => qr/request rate by status/i,
    'latency p50/p95/p99'       => qr/latency p50.*p95.*p99/i,
    'origin fetches/s, inflight'=> qr/origin fetches.*in flight/i,
    'breaker states'            => qr/breaker states/i,
    'Redis errors by kind'      => qr/redis errors by kind/i,
    'Redis latency p99'         => qr/redis latency p99/i,
    'Redis memory'              => qr/redis memory/i,
    'Redis evictions'           => qr/redis evictions/i,
    'L1 entries and evictions'  => qr/L1 entries and evictions/i,
    'Bloom fill and rejections' => qr/bloom.*fill ratio.*rejections/i,
);
for my $what (sort keys %want) {
    ok((first { $_->{title} =~ $want{$what} } @panels), "a panel: $what");
}
my @q = map { $_->{expr} } map { @{$_->{targets}} } @panels;
for my $quantile ('0.50', '0.95', '0.99') {
    ok((grep { /histogram_quantile\($quantile, sum by \(le, policy\) \(rate\(cache_guard_request_duration_seconds_bucket\{[^}]*\}\[5m\]\)\)\)/ } @q),
       "p" . ($quantile * 100) . " of the request durations over rate(...[5m])");
}
ok((grep { /histogram_quantile\(0.99, .*cache_guard_redis_duration_seconds_bucket/ } @q),
   'the Redis p99');



=== TEST 2: the alert rules: Prometheus' rule file format, the alerts asked for
--- check
SKIP: {
    skip 'YAML::XS (Debian: libyaml-libyaml-perl) is not installed', 1 unless $main::YAML;
    my $r = rules();
    is(ref $r->{groups}, 'ARRAY', 'groups');
    my @rules = map { @{$_->{rules}} } @{$r->{groups}};
    ok(!(grep { !length($_->{name} // '') || ref $_->{rules} ne 'ARRAY' } @{$r->{groups}}),
       'each group has a name and rules');
    my %n;
    $n{$_->{alert}}++ for @rules;
    is_deeply([grep { $n{$_} > 1 } sort keys %n], [], 'alert names are unique');
    my @allowed = qw(alert expr for labels annotations keep_firing_for);
    is_deeply([map { $_->{alert} // '(no name)' } grep {
                  my $rule = $_;
                  !length($rule->{alert} // '') || !length($rule->{expr} // '')
                  || grep { my $k = $_; !grep { $_ eq $k } @allowed } keys %$rule
              } @rules], [], 'each rule: alert and expr, no unknown field');
    is_deeply([map { $_->{alert} } grep { defined $_->{for} && $_->{for} !~ /^(?:\d+[smhdwy])+$/ } @rules],
              [], 'durations in Prometheus\' format');
    is_deeply([map { $_->{alert} } grep {
                  ($_->{labels}{severity} // '') !~ /^(critical|warning|info)$/
                  || !length($_->{annotations}{summary} // '')
                  || !length($_->{annotations}{description} // '')
              } @rules], [], 'each rule: a severity, a summary and a description');
    my %rule = map { ($_->{alert} => $_) } @rules;
    for my $name (qw(CacheGuardHitRatioLow CacheGuardErrorRateHigh CacheGuardBreakerOpen
                     CacheGuardRedisErrors CacheGuardOriginSaturated CacheGuardRedisEvictions
                     CacheGuardBloomFull)) {
        ok($rule{$name}, "an alert $name");
    }
    like($rule{CacheGuardHitRatioLow}{expr}, qr/\[10m\].*<\s*0\.8\b/s, 'hit ratio below 0.8 over 10m');
    is($rule{CacheGuardBreakerOpen}{for}, '1m', 'a breaker open for 1m');
    like($rule{CacheGuardBreakerOpen}{expr}, qr/cache_guard_breaker_state\)?\s*==\s*1\b/,
         'state == 1');
    like($rule{CacheGuardErrorRateHigh}{expr}, qr/cache_guard_responses_5xx_total.*>\s*0\.05\b/s,
         'a 5xx share above 5%');
    like($rule{CacheGuardBloomFull}{expr}, qr/cache_guard_bloom_fill_ratio\s*>\s*0\.5\b/,
         'fill ratio above 0.5');
    my @bad = grep { /\{\{(?!\s*(?:\$labels\.\w+|\$value(?:\s*\|\s*\w+)?)\s*\}\})/ }
              map { values %{$_->{annotations}} } @rules;
    is_deeply(\@bad, [], 'annotations use only $labels.NAME and $value templates');
}



=== TEST 3: every cache_guard_* series, label and label value in the dashboard and the rules is one the live exposition exports
--- check
my $m = full_metrics();
is_deeply($m->{errors}, [], 'the live exposition is valid');
my $d = dashboard();
my @dq = dashboard_queries($d);
ok(@dq >= 20, scalar(@dq) . ' dashboard queries');
is_deeply([query_problems($m, @dq)], [], 'the dashboard\'s queries name what is exported');
my %used;
$used{s/_(?:bucket|sum|count)$//r}++ for map { $_->[1] =~ /\b(cache_guard_\w+)/g } @dq;
$used{$_}++ for map { $_->[1] =~ /\b(cache_guard_\w+)/g } @dq;
is_deeply([grep { !$used{$_} } sort @{$m->{order}}], [],
          'and the dashboard shows every family exported');
SKIP: {
    skip 'YAML::XS (Debian: libyaml-libyaml-perl) is not installed', 2 unless $main::YAML;
    my @rq = rule_queries(rules());
    ok(@rq >= 7, scalar(@rq) . ' rules');
    is_deeply([query_problems($m, @rq)], [], 'the rules\' queries name what is exported');
}

# the checks themselves catch what they should
my %spoiled = (
    'a misspelt name'           => 'rate(cache_guard_request_total[5m])',
    'a histogram\'s bare name'  => 'cache_guard_request_duration_seconds',
    'a misspelt label'          => 'cache_guard_hits_total{levle="l1"}',
    'a label value never seen'  => 'cache_guard_requests_total{status=~"HIT|MISSES"}',
    'by a label it lacks'       => 'sum by (zone) (cache_guard_requests_total)',
    'an unbalanced parenthesis' => 'sum(rate(cache_guard_requests_total[5m])',
);
for my $what (sort keys %spoiled) {
    my @p = query_problems($m, [$what, $spoiled{$what}]);
    ok(scalar @p, "the check finds $what") and note(join "\n", @p);
}



=== TEST 4: promtool (Debian's prometheus package), when installed: the rules check, the dashboard's queries parse, and the alerts fire on made-up series when they should
--- check
my ($promtool) = grep { -x } map { "$_/promtool" } split /:/, $ENV{PATH};
SKIP: {
    skip 'promtool is not installed (Debian: prometheus)', 3 unless $promtool;
    skip 'YAML::XS (Debian: libyaml-libyaml-perl) is not installed', 3 unless $main::YAML;
    my $dir = servroot() . '/tmp';
    my $file = contrib('prometheus-alerts.yml');
    my $out = `$promtool check rules '$file' 2>&1`;
    is($?, 0, 'promtool check rules') or diag($out);

    # the dashboard's queries as recording rules, Grafana's variables
    # replaced by what Grafana would put there
    my @records = map {
        my $expr = $_->[1];
        $expr =~ s/\$__rate_interval/1m/g;
        $expr =~ s/\$(?:policy|instance)/.*/g;
        { record => 'dashboard:query', expr => $expr }
    } grep { $_->[0] !~ /^variable/ } dashboard_queries(dashboard());
    YAML::XS::DumpFile("$dir/dashboard-rules.yml",
                       { groups => [{ name => 'dashboard', rules => \@records }] });
    $out = `$promtool check rules '$dir/dashboard-rules.yml' 2>&1`;
    is($?, 0, scalar(@records) . ' dashboard queries parse') or diag($out);

    # the rules without their annotations (promtool compares them
    # verbatim), against series over 40 minutes
    my $rules = rules();
    delete $_->{annotations} for map { @{$_->{rules}} } @{$rules->{groups}};
    YAML::XS::DumpFile("$dir/rules.yml", $rules);
    my $alert = sub {
        my ($name, $at, @labels) = @_;
        return { alertname => $name, eval_time => $at,
                 exp_alerts => [map { { exp_labels => $_ } } @labels] };
    };
    my %n1 = (instance => 'n1');
    YAML::XS::DumpFile("$dir/rules-test.yml", {
        rule_files => ["$dir/rules.yml"],
        evaluation_interval => '1m',
        tests => [{
            interval => '1m',
            input_series => [
                # p: misses only, half of the answers 5xx; q: 10 hits a miss
                { series => 'cache_guard_requests_total{instance="n1",policy="p",status="MISS"}', values => '0+60x40' },
                { series => 'cache_guard_requests_total{instance="n1",policy="p",status="HIT"}', values => '0x40' },
                { series => 'cache_guard_responses_5xx_total{instance="n1",policy="p"}', values => '0+30x40' },
                { series => 'cache_guard_requests_total{instance="n1",policy="q",status="MISS"}', values => '0+60x40' },
                { series => 'cache_guard_requests_total{instance="n1",policy="q",status="HIT"}', values => '0+600x40' },
                { series => 'cache_guard_responses_5xx_total{instance="n1",policy="q"}', values => '0x40' },
                # the Redis breaker opens at 2m, the origin's stays closed
                { series => 'cache_guard_breaker_state{instance="n1",breaker="redis"}', values => '0 0 1x38' },
                { series => 'cache_guard_breaker_state{instance="n1",breaker="origin:p"}', values => '0x40' },
                { series => 'cache_guard_bloom_fill_ratio{instance="n1",filter="users"}', values => '0.6x40' },
                { series => 'cache_guard_bloom_fill_ratio{instance="n1",filter="ids"}', values => '0.2x40' },
                { series => 'cache_guard_redis_evicted_keys_total{instance="n1"}', values => '0x40' },
            ],
            alert_rule_test => [
                $alert->('CacheGuardBreakerOpen', '2m'),
                $alert->('CacheGuardBreakerOpen', '4m',
                         { %n1, breaker => 'redis', severity => 'critical' }),
                $alert->('CacheGuardHitRatioLow', '5m'),
                $alert->('CacheGuardHitRatioLow', '25m',
                         { %n1, policy => 'p', severity => 'warning' }),
                $alert->('CacheGuardErrorRateHigh', '25m',
                         { %n1, policy => 'p', severity => 'critical' }),
                $alert->('CacheGuardBloomFull', '10m'),
                $alert->('CacheGuardBloomFull', '25m',
                         { %n1, filter => 'users', severity => 'warning' }),
                $alert->('CacheGuardRedisEvictions', '25m'),
            ],
        }],
    });
    $out = `$promtool test rules '$dir/rules-test.yml' 2>&1`;
    is($?, 0, 'promtool test rules: each alert fires when it should, for what it should')
        or diag($out);
}
