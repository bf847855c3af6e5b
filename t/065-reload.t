# nginx -s reload: requests in flight and arriving during reloads all get
# their answer; what lives in shared memory is kept: L1 entries, and the
# circuit breakers' state (forced by the admin API or opened by failures),
# also when the new configuration differs.
use lib 't/lib';

# Reloads need nginx's master; valgrind runs one process.
use Test::CacheGuard $ENV{TEST_NGINX_USE_VALGRIND}
    ? (skip_all => 'reloads with new workers: not under valgrind')
    : 'no_plan';
use Test::CacheGuard::Assert;
use Test::CacheGuard::Preset;
use Test::CacheGuard::Status;

use JSON::PP ();
use POSIX ();
use Time::HiRes qw(time sleep);
use Test::CacheGuard::Util qw(child_pids process_cmdline);
use IO::Socket::INET;

standard_preamble(config => guard_location() . admin_location());

sub breakers {
    my $r = http_get('/admin/breaker');
    die "breakers: status $r->{status}\n" unless $r->{status} == 200;
    return { map { ($_->{name} => $_) }
             @{JSON::PP::decode_json($r->{body})->{breakers}} };
}

# Reload with $text added at the end of the server block (a new
# configuration), or the same configuration without $text.
sub reload_with {
    my ($text) = @_;
    if (defined $text) {
        my $file = servroot() . '/conf/nginx.conf';
        open my $in, '<', $file or die "$file: $!\n";
        my $conf = do { local $/; <$in> };
        close $in;
        $text =~ s/\$(TEST_NGINX_\w+)/$ENV{$1}/g;
        $conf =~ s/(\n    }\n}\n)\z/\n$text$1/ or die "no server block end\n";
        open my $out, '>', $file or die "$file: $!\n";
        print {$out} $conf;
        close $out or die "$file: $!\n";
    }
    return nginx_reload();
}

# The background load: a child process sends batches of 20 concurrent
# requests (10 for 5 hot keys, 10 for new cold keys whose fill the origin
# holds for 0.2 s) until $file.stop exists (or the test is gone, or 40 s
# passed).  One line per response:
# "R batch status error|- guard path", and per batch "B batch start end".
sub start_load {
    my ($file) = @_;
    my $parent = $$;
    my $pid = fork // die "fork: $!\n";
    return $main::load_child = $pid if $pid;
    my $ok = eval {
        open my $out, '>', $file or die "$file: $!\n";
        select((select($out), $| = 1)[0]);
        my $deadline = time + 40;
        for (my $b = 0; !-e "$file.stop" && time < $deadline
                        && getppid() == $parent; $b++) {
            my @paths = map { $_ < 10 ? '/hot/' . ($_ % 5)
                                      : "/cold/$b-$_?delay=0.2" } 0 .. 19;
            my $start = time;
            my $res = http_concurrent(20, sub { $paths[$_[0]] },
                                      timeout => 20);
            my $end = time;
            for my $i (0 .. 19) {
                my $r = $res->[$i];
                (my $error = $r->{error} // '-') =~ s/\s+/_/g;
                printf {$out} "R %d %d %s %s %s\n", $b, $r->{status}, $error,
                    (guard($r) || '-') =~ s/ /_/gr, $paths[$i];
            }
            printf {$out} "B %d %.6f %.6f\n", $b, $start, $end;
        }
        close $out;
        1;
    };
    print STDERR "load: $@" unless $ok;
    POSIX::_exit($ok ? 0 : 1);
}

# The load's pid while it runs, for the cleanup of a check that died.
our $load_child;

sub load_lines {
    my ($file, $kind) = @_;
    open my $in, '<', $file or return ();
    return map { [split ' '] } grep { /^\Q$kind\E / } <$in>;
}

# Generation $g of TEST 5's configuration: $n locations /l0/ .. /l$n-1/,
# each with a policy of its own named "g${g}p$i" (so its own breaker).
sub write_generation {
    my ($g, $n) = @_;
    my $dir = $ENV{TEST_NGINX_HTML_DIR};
    my $conf = '';
    for my $i (0 .. $n - 1) {
        open my $p, '>', "$dir/g$g-$i.lua" or die "$dir/g$g-$i.lua: $!\n";
        print {$p} "return { name = \"g${g}p$i\", key = \"\$uri\", ttl = 60 }\n";
        close $p or die "$!\n";
        $conf .= "location /l$i/ {\n    cache_guard main;\n"
               . "    cache_guard_policy $dir/g$g-$i.lua;\n"
               . "    proxy_pass http://origin;\n"
               . "    add_header X-Guard \"\$cache_guard_status\" always;\n}\n";
    }
    open my $out, '>', "$dir/gen.conf" or die "$dir/gen.conf: $!\n";
    print {$out} $conf;
    close $out or die "$!\n";
}

# No worker of an older configuration is left (they finish their requests
# after a reload, then exit).
sub old_workers_gone {
    return wait_for(sub {
        !grep { process_cmdline($_) =~ /shutting down/ } child_pids(nginx_pid())
    }, 30, 'the old workers to exit');
}

run_tests();

__DATA__

=== TEST 1: three reloads under load (hot and cold keys, fills in flight): no request fails
--- main_config
    worker_processes 2;
--- user_files
>>> p.lua
return { key = "$uri", ttl = 60 }
--- check
my $file = servroot() . '/logs/load.txt';
unlink $file, "$file.stop";
my $batches = sub { my @b = load_lines($file, 'B'); scalar @b };
my $child = start_load($file);
my @reloads;
for my $n (1 .. 3) {
    my $before = $batches->();
    ok(wait_for(sub { $batches->() >= $before + 2 }, 20, 'two batches'),
       "reload $n: load is running");
    my $start = time;
    ok(nginx_reload(), "reload $n: new workers serve");
    push @reloads, [$start, time];
}
my $before = $batches->();
wait_for(sub { $batches->() >= $before + 2 }, 20,
         'two batches after the reloads');
open my $stop, '>', "$file.stop" or die $!;
close $stop;
ok(wait_for(sub { waitpid($child, POSIX::WNOHANG()) == $child }, 30,
            'the load to stop'), 'the load stopped');
is($? >> 8, 0, 'the load ran without dying');
undef $main::load_child;

my @res = load_lines($file, 'R');
my @batch = load_lines($file, 'B');
note(scalar(@res) . ' requests in ' . scalar(@batch) . ' batches');
ok(@res >= 9 * 20, 'at least 9 batches of 20 requests were sent');
my @failed = grep { $_->[2] != 200 || $_->[3] ne '-' } @res;
is(scalar @failed, 0, 'every request got a 200, none a connection error')
    or diag(join "\n", map { "@$_" } grep { defined } @failed[0 .. 9]);
for my $n (0 .. 2) {
    my ($h0, $h1) = @{$reloads[$n]};
    ok((grep { $_->[2] < $h1 && $_->[3] > $h0 } @batch),
       'requests were in flight during reload ' . ($n + 1));
}
my @cold = grep { $_->[5] =~ m{^/cold/} } @res;
is(scalar(grep { $_->[4] eq 'MISS' } @cold), scalar @cold,
   'every cold key was a fill');
is(scalar(grep { $_->[5] =~ m{^/hot/} && $_->[4] eq 'MISS' } @res), 5,
   'each hot key was filled once, and then hit');
is(origin_count("/hot/$_"), 1, "/hot/$_ reached the origin once") for 0 .. 4;
is(origin_total(), 5 + @cold,
   'the origin saw the 5 hot fills and the cold ones');
--- cleanup
if (my $pid = $main::load_child) {    # the check died: stop the load
    kill 'KILL', $pid;
    waitpid $pid, 0;
    undef $main::load_child;
}
--- no_error_log
[error]
[alert]
[crit]



=== TEST 2: L1 is kept across a reload that changes the configuration
--- user_files
>>> p.lua
return { key = "$uri", ttl = 60, l1 = { ttl = 60 } }
--- check
my $r = http_get('/l1');
is(guard($r), 'MISS', 'filled');
ok(stored('cg:/l1'), 'stored in Redis');
is(guard(http_get('/l1')), 'HIT l1', 'in L1');
redis_flush();
ok(reload_with(<<'CONF'), 'reloaded with a new location');
    location /new/ {
        return 204;
    }
CONF
is(http_get('/new/')->{status}, 204, 'the new configuration serves');
my $again = http_get('/l1');
is(guard($again), 'HIT l1', 'served from L1 after the reload, Redis empty');
is($again->{body}, $r->{body}, 'with the same body');
is(origin_count('/l1'), 1, 'the origin was asked once');
--- no_error_log
[error]
[alert]
[crit]



=== TEST 3: a breaker forced open stays open across a reload that adds a policy, until released
--- user_files
>>> p.lua
return { key = "$uri", ttl = 60 }
>>> q.lua
return { key = "$uri", ttl = 60 }
--- check
my $b = breaker('origin:p');
is($b->{state}, 'closed', 'closed at first');
is($b->{forced}, 'auto', 'not forced');
$b = breaker('origin:p', 'open');
is($b->{state}, 'open', 'POST state=open: open');
is($b->{forced}, 'open', 'and forced');
is_fallback(http_get('/a'), 'a cold key before the reload');
ok(reload_with(<<'CONF'), 'reloaded with a location of another policy');
    location /q/ {
        cache_guard main;
        cache_guard_policy $TEST_NGINX_HTML_DIR/q.lua;
        proxy_pass http://origin;
        add_header X-Guard "$cache_guard_status $cache_guard_level" always;
    }
CONF
$b = breaker('origin:p');
is($b->{state}, 'open', 'still open after the reload');
is($b->{forced}, 'open', 'still forced');
my $all = breakers();
is(join(' ', sort keys %$all), 'origin:p origin:q redis',
   'the list has the new policy\'s breaker');
is($all->{'origin:q'}{state}, 'closed', 'which is closed');
is_fallback(http_get('/b'), 'a cold key after the reload');
is(origin_total(), 0, 'no request reached the origin');
my $q = http_get('/q/x');
is($q->{status} . ' ' . guard($q), '200 MISS', 'the other policy still fills');
is(origin_count('/q/x'), 1, 'from the origin');
$b = breaker('origin:p', 'auto');
is($b->{forced}, 'auto', 'POST state=auto: released');
isnt($b->{state}, 'open', "and no longer open ($b->{state})");
for my $i (1 .. 3) {
    my $r = http_get("/c$i");
    is($r->{status} . ' ' . guard($r), '200 MISS', "/c$i reaches the origin");
}
is(origin_total(), 4, 'the origin saw them');
is(breaker('origin:p')->{state}, 'closed', 'closed after 3 good answers');
--- no_error_log
[error]
[alert]
[crit]



=== TEST 4: a breaker opened by failures stays open across a reload, and is not opened again
--- user_files
>>> p.lua
return {
  key = "$uri", ttl = 60,
  breaker = { origin = { min_requests = 5, failure_rate = 0.5, window = 10,
                         open_for = 60 } },
}
--- check
my @r = map { http_get("/f$_?status=500") } 1 .. 10;
is(join(' ', map { $_->{status} } @r),
   '500 500 500 500 500 503 503 503 503 503',
   '5 failures from the origin, then the fallback');
is(scalar(grep { guard($_) =~ /^FALLBACK\b/ } @r[5 .. 9]), 5, 'FALLBACK')
    or diag(tally(\@r));
is(origin_total(), 5, 'the origin saw 5 requests');
my $b = breaker('origin:p');
is($b->{state}, 'open', 'the breaker opened');
is($b->{forced}, 'auto', 'by itself');
is($b->{opened}, 1, 'once');
is("$b->{requests}/$b->{failures}", '5/5',
   '5 requests, 5 failures in the window');
my $since = $b->{since_ms};
ok(reload_with(), 'reloaded');
my $after = breaker('origin:p');
is($after->{state}, 'open', 'still open after the reload');
is($after->{opened}, 1, 'not opened again');
ok($after->{since_ms} >= $since,
   "open since before the reload ($since -> $after->{since_ms} ms)");
is("$after->{requests}/$after->{failures}", '5/5', 'the window is kept');
is_fallback(http_get('/f11?status=500'), 'a cold key after the reload');
is(origin_total(), 5, 'which did not reach the origin');
my @opened = error_log_since_block()
    =~ /breaker "origin:p" open, (?:too many failures|failures in a row)/g;
is(scalar @opened, 1, 'the opening was logged once');
--- no_error_log
[error]
[alert]
[crit]




=== TEST 5: reloads that rename every policy, 450 names in all (more than the 256 breaker records): every reload succeeds, a record taken over starts afresh, the removed names are gone from the lists, and the breakers work after
--- config
    location /admin/ {
        cache_guard_admin;
    }
    location = /metrics {
        cache_guard_metrics;
    }
    include $TEST_NGINX_HTML_DIR/gen.conf;
--- setup
write_generation(0, 50);
--- check
for my $g (1 .. 8) {
    my $prev = $g - 1;
    # an open, forced breaker in each generation: a record reused later
    # must not bring it back under a new name
    is(breaker("origin:g${prev}p0", 'open')->{state}, 'open',
       "generation $prev: origin:g${prev}p0 forced open");
    write_generation($g, 50);
    ok(reload_with(), "reload $g: the configuration of 50 new names serves")
        or last;
    old_workers_gone();
    my $all = breakers();
    my @names = sort keys %$all;
    is_deeply(\@names,
              [sort('redis', map { "origin:g${g}p$_" } 0 .. 49)],
              "reload $g: the breakers are this configuration's");
    my @bad = grep { $all->{$_}{state} ne 'closed'
                     || $all->{$_}{forced} ne 'auto' } @names;
    is("@bad", '', "reload $g: every breaker closed and not forced");
    my $m = http_get('/metrics')->{body};
    unlike($m, qr/g${prev}p\d/, "reload $g: the metrics no longer name g${prev}");
    like($m, qr/policy="g${g}p49"/, "reload $g: and name the new ones");
    my $r = http_get("/l7/a$g");
    is("$r->{status} " . guard($r), '200 MISS', "reload $g: a guarded request fills");
}
is(breaker('origin:g8p3', 'open')->{state}, 'open', 'a breaker forced open');
is_fallback(http_get('/l3/cold'), 'its policy answers the fallback');
is(breaker('origin:g8p3', 'auto')->{forced}, 'auto', 'released');
my $r = http_get('/l3/cold2');
is("$r->{status} " . guard($r), '200 MISS', 'and the origin is reached again');
is(origin_count('/l3/cold'), 0, 'the refused request never reached the origin');
--- no_error_log
[emerg]
[error]
[alert]
[crit]




=== TEST 6: a worker of an old configuration still busy keeps its breakers: no name takes them over (the reload that needs them fails, saying why) until it exits
--- config
    location /admin/ {
        cache_guard_admin;
    }
    include $TEST_NGINX_HTML_DIR/gen.conf;
--- setup
write_generation(0, 50);
--- check
# a request the generation-0 worker has begun to read, and will serve
my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                 PeerPort => $ENV{TEST_NGINX_SERVER_PORT},
                                 Timeout => 10)
    or die "connect: $!\n";
print {$sock} "GET /l0/held HTTP/1.0\r\n";
my ($old) = worker_pids();
ok(wait_for(sub { grep { $_ == $old } child_pids(nginx_pid()) }, 5, 'w'),
   'the generation-0 worker runs');
for my $g (1 .. 4) {
    write_generation($g, 50);
    ok(nginx_reload(), "reload $g: serves");
    ok(wait_for(sub {
        my @left = grep { process_cmdline($_) =~ /shutting down/ }
                   child_pids(nginx_pid());
        @left == 1 && $left[0] == $old
    }, 30, 'only the generation-0 worker left'),
       "reload $g: only the busy generation-0 worker is left of the old ones");
}
# 251 records, and a worker of generation 0 alive: a record keeps only the
# last generation that named it, so any of them may be that worker's
write_generation(5, 50);
kill 'HUP', nginx_pid();
ok(wait_for(sub { error_log_since_block() =~ /no room for the breaker "origin:g5p\d+"/ },
            20, 'the refusal'), 'reload 5 is refused while the old worker lives');
is(join(' ', sort keys %{ breakers() }),
   join(' ', sort('redis', map { "origin:g4p$_" } 0 .. 49)),
   'generation 4 still serves');
print {$sock} "Host: localhost\r\n\r\n";
my $answer = do { local $/; <$sock> } // '';
close $sock;
like($answer, qr{^HTTP/1\.1 200 }, 'the held request is answered by its old worker');
like($answer, qr/X-Guard: MISS/, 'through its policy g0p0');
ok(wait_for(sub { !grep { $_ == $old } child_pids(nginx_pid()) }, 30, 'exit'),
   'then the generation-0 worker exits');
ok(nginx_reload(), 'reload 5 again: serves, on records of the old names');
is(join(' ', sort keys %{ breakers() }),
   join(' ', sort('redis', map { "origin:g5p$_" } 0 .. 49)),
   'generation 5 serves');
is(origin_count('/l0/held'), 1, 'the held request reached the origin once');
--- error_log
no room for the breaker
--- no_error_log
[error]
[alert]
[crit]
