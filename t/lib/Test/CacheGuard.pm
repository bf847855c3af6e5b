package Test::CacheGuard;

use strict;
use warnings;

use Test::Base -base;
use Test::Base::Filter ();

use File::Path qw(make_path);
use Time::HiRes qw(sleep time);

use Test::CacheGuard::HTTP qw(
    http_request http_get http_concurrent build_request exchange
);
use Test::CacheGuard::Nginx qw(build_config);
use Test::CacheGuard::Origin qw(
    origin_start origin_stop
    origin_count origin_total origin_reset origin_peak origin_inflight
    origin_log origin_set origin_clear origin_last_request
);
use Test::CacheGuard::Redis qw(
    redis redis_flush redis_start redis_stop redis_pause redis_resume
    redis_running redis_disconnect
);
use Test::CacheGuard::Util qw(repo_root wait_until);

our @EXPORT = qw(
    run_tests add_block_preprocessor note
    http_get http_request http_concurrent
    origin_count origin_total origin_reset origin_peak origin_inflight
    origin_log origin_set origin_clear origin_last_request
    redis redis_flush redis_start redis_stop redis_pause redis_resume
    redis_running
    wait_for
    nginx_reload nginx_pid worker_pids error_log_since_block servroot
    start_second_nginx stop_second_nginx block_responses
);

=head1 NAME

Test::CacheGuard - Test::Nginx-like data-driven tests for nginx-cache-guard

=head1 SYNOPSIS

    use lib 't/lib';
    use Test::CacheGuard 'no_plan';   # or: tests => N, or plan(...) later
    run_tests();
    __DATA__

    === TEST 1: miss then hit
    --- http_config
        cache_guard_zone main size=1m;
    --- config
        location /a {
            cache_guard main;
            proxy_pass http://127.0.0.1:$TEST_NGINX_ORIGIN_PORT;
        }
    --- request eval
    ["GET /a", "GET /a"]
    --- response_headers eval
    ["X-Cache: MISS", "X-Cache: HIT"]
    --- check
        is(origin_count('/a'), 1, 'origin saw one request');
    --- no_error_log
    [error]

=head1 BLOCKS

Blocks are parsed by Test::Base (default filters C<norm trim>; C<eval>,
C<chomp> etc. work as usual; C<eval> code runs in the test's package with
strict on and dies on errors).  Each block gets a fresh server root
(F<t/servroot>: conf/, logs/, html/, tmp/), a fresh nginx, a reset origin
(counts, log, peak, per-path settings) and a running, flushed Redis.  nginx
counts as started once it listens and runs every worker its configuration
asks for (C<worker_processes> N, or one per CPU online for C<auto>), so
C<worker_pids()> holds them all from the first line of C<init>.

=over

=item main_config, event_config, http_config, config

Text for the top level, C<events {}>, C<http {}> and the default
C<server {}> (listening on 127.0.0.1:$TEST_NGINX_SERVER_PORT, server_name
localhost).  The generated nginx.conf starts with C<load_module
$TEST_NGINX_MODULE;> then C<daemon off; master_process on; worker_processes
1; error_log logs/error.log $TEST_NGINX_LOG_LEVEL; pid logs/nginx.pid;>
(and C<user root;> when run as root); C<events> has C<worker_connections
1024;>; C<http> has C<access_log logs/access.log; default_type text/plain;>
and the *_temp_path directives under tmp/.  A default is left out when the
section sets the same directive (C<daemon> is always forced off).  nginx
starts reusing connections when fewer than 1/16 of worker_connections are
free: for more than ~900 concurrent clients, raise it in C<event_config>.

=item user_files

C<< >>> relative/path >> lines, each followed by the content of that file,
written under servroot/html/ ($TEST_NGINX_HTML_DIR).

=item request, request eval, pipelined_requests eval

C<GET /a> (HTTP/1.1 added unless a version is given), optionally followed
by body lines (the final newline is dropped).  With C<eval>, an arrayref of
such strings: sent one after the other, each on a new connection.
C<pipelined_requests eval>: an arrayref of requests all written at once on
one keep-alive connection.  Host: localhost and Connection: close are sent
unless given in C<more_headers> ("Name: value" lines, sent with every
request; with C<eval>, an arrayref with one such text per request, C<undef>
for none).  No request section: no request is sent (C<--- check> may do
everything itself).

=item error_code, response_body, response_body_like, response_headers, response_headers_like

One expectation for every request, or with C<eval> an arrayref with one
item per request (C<undef> items are not checked).  C<response_body> is
exact (use C<chomp> for a body without a final newline; a C<qr//> item
from eval is matched instead);
C<response_body_like> is a regex (matched with /s; a C<qr//> from eval is
used as is).  C<response_headers>: lines C<Name: value> (exact value,
several values of a header joined with ", ") or C<!Name> (header absent);
C<response_headers_like>: the values are regexes.

=item error_log, no_error_log

Lines of plain substrings, or with C<eval> a string, a C<qr//> or an
arrayref of them, matched against the part of logs/error.log written during
the block (and nginx's stderr for must_die blocks).  Substrings that must
appear are waited for (up to 5 s, 20 s under valgrind) since some lines
are logged after the response.

=item wait, timeout

C<wait>: seconds to sleep after the requests, before C<check> and the log
checks.  C<timeout>: per-request client timeout in seconds (10).

=item must_die

nginx must fail to start (the block passes when it does); no requests are
sent; error_log / no_error_log are matched against stderr + error.log.

=item setup, init, check, cleanup

Perl code run in the test's package: C<setup> before nginx starts (e.g.
to give Redis a password the module must find), C<init> after nginx started and
before the requests, C<check> after the requests and C<wait>, C<cleanup>
at the end of the block whatever happened (before nginx is stopped), to
undo changes the next blocks must not see (e.g. a Redis password).  The
code sees the test file's subs and fully qualified package variables
(C<$main::x>), not its C<my> variables.

=item skip_valgrind, SKIP, ONLY, LAST

C<skip_valgrind>: the block is skipped (no tests) with
TEST_NGINX_USE_VALGRIND.  SKIP / ONLY / LAST as in Test::Base.

=back

C<$TEST_NGINX_NAME> variables are expanded (from %ENV, which holds the
harness's own values too) in the config sections, user_files, requests,
more_headers and the string expectations; an unknown one is an error.

=head1 HELPERS (exported)

=over

=item add_block_preprocessor(sub { my ($block) = @_; ... })

As in Test::Nginx: called for every block before it runs (after the
filters); C<< $block->set_value($section, $text) >> changes a section.

=item http_get($path, %opt), http_request($method, $path, %opt)

Against the nginx under test (opt: C<< headers => {Name => value|[values]} >>
or C<< [Name => value, ...] >> or C<< ["Name: value", ...] >>, C<body>,
C<port>, C<timeout> (10 s), C<version>).  Returns
C<< { status, status_line, headers => {lc name => value (repeats joined
with ", ")}, header_list => [[Name, value], ...], body, elapsed, error } >>;
C<status> is 0 and C<error> says why when no response was received; C<error>
is absent on success.

=item http_concurrent($n, $path_or_coderef, %opt)

$n requests started at once (one process, non-blocking sockets and
IO::Select), responses returned in order as an arrayref.  A coderef gets
the index and returns a path or C<< {method, path, headers, body, port} >>;
%opt: defaults for those plus C<timeout> for the whole batch (30 s).  Dies
when C<ulimit -n> is too low for $n.

=item origin_count($path), origin_total(), origin_peak(), origin_inflight(), origin_reset(), origin_log(), origin_set($path, %behaviour), origin_clear($path), origin_last_request($path)

The test origin (F<t/lib/origin.pl>, see there).  Counts exclude the query
string.  origin_log returns a list of C<< {time, method, target} >>;
origin_set takes the query argument names (status, delay, size, ct, hdr =>
'N:V' or [...], close => 1) and replaces the earlier setting of that path;
origin_last_request returns C<< {method, target, version, headers, body} >>
or undef.

=item redis(@command), redis_flush(), redis_start(), redis_stop(), redis_pause(), redis_resume(), redis_running()

See L<Test::CacheGuard::Redis>: replies decoded (bulk as bytes, nil as
undef, arrays as arrayrefs); an error reply dies "redis error: ...".
redis() keeps one connection, like a redis-cli session (SELECT and AUTH
carry over); each block starts with a new one.

=item wait_for($cond, $timeout = 10, $what)

Polls $cond every 20 ms; returns its true value, or false after $timeout
seconds (with a diag naming $what, when given).  Exceptions count as false.

=item nginx_reload($which), nginx_pid($which), worker_pids($which), error_log_since_block($which), servroot($which)

For the block's nginx, or the second one with C<$which = 'second'>.
nginx_reload sends HUP and returns true once as many new workers as the
configuration file now asks for serve and no old one does (old workers
still finishing requests are "shutting down" and not in worker_pids; they
are not waited for); false if that did not happen in time, e.g. a bad new
config.

=item start_second_nginx($server_config, %opt), stop_second_nginx()

A second nginx (servroot F<t/servroot2>, port $TEST_NGINX_SERVER_PORT2) with
the block's main/event/http config unless %opt gives C<main_config>,
C<event_config>, C<http_config>; C<port> overrides the port.  Dies if it
does not start.  Stopped at the end of the block.

=item block_responses()

The responses (as above) of the current block's requests.

=back

=head1 SEE ALSO

The helpers the behaviour tests share, each imported by the files that
use it: L<Test::CacheGuard::Preset> (C<guard_preamble>: a file's
add_block_preprocessor from options; C<guard_location>, C<admin_location>),
L<Test::CacheGuard::Assert> (X-Guard, time bounds, fallback answers),
L<Test::CacheGuard::Status> (the admin API's and the status page's JSON),
L<Test::CacheGuard::Util> (C<slurp>, C<write_lines>, processes),
L<Test::CacheGuard::Prom> (the metrics exposition),
L<Test::CacheGuard::FakeRedis> (a Redis that misbehaves).

=head1 ENVIRONMENT

TEST_NGINX_MODULE (default build/nginx/objs/ngx_http_cache_guard_module.so),
TEST_NGINX_NO_MODULE=1 (no load_module line), TEST_NGINX_BINARY
(/usr/sbin/nginx), TEST_NGINX_SERVER_PORT (1984), TEST_NGINX_SERVER_PORT2
(1986), TEST_NGINX_ORIGIN_PORT (1985), TEST_NGINX_REDIS_PORT (6390),
TEST_NGINX_SERVROOT (t/servroot), TEST_NGINX_ROOT (the repository),
TEST_NGINX_HTML_DIR (set by the harness),
TEST_NGINX_LOG_LEVEL (debug), TEST_NGINX_USE_VALGRIND=1 (run nginx under
valgrind memcheck, master_process off, t/valgrind.suppress if present,
extra options in TEST_NGINX_VALGRIND_OPTS; a block fails when valgrind
reports errors).

=cut

my $REPO = repo_root();

$ENV{TEST_NGINX_SERVROOT} ||= "$REPO/t/servroot";
$ENV{TEST_NGINX_ROOT} ||= $REPO;
$ENV{TEST_NGINX_HTML_DIR} = "$ENV{TEST_NGINX_SERVROOT}/html";
$ENV{TEST_NGINX_MODULE} ||=
    "$REPO/build/nginx/objs/ngx_http_cache_guard_module.so";
$ENV{TEST_NGINX_LOG_LEVEL} ||= 'debug';

my $VALGRIND = $ENV{TEST_NGINX_USE_VALGRIND} ? 1 : 0;
my $LOG_WAIT = $VALGRIND ? 20 : 5;
my $DEFAULT_REQUEST_TIMEOUT = 10;

my $test_package = 'main';
my $redis_is_ours;    # we started it: stop it at the end
my ($current_block, $nginx, $second_nginx, @responses);
my @block_preprocessors;

sub note { goto &Test::More::note }

# --- eval filter: run in the test's package, die on errors ---------------

package Test::CacheGuard::Filter {
    our @ISA = ('Test::Base::Filter');

    sub eval {
        my ($self, $code) = @_;
        $self->assert_scalar($code);
        my $block = $self->current_block;
        my @values = CORE::eval(
            "package $test_package;\n#line 1 \"" . $block->name
            . " (eval)\"\n$code");
        die 'eval section of "' . $block->name . "\" failed: $@" if $@;
        return @values;
    }
}

# --- small helpers ---------------------------------------------------------

sub _expand {
    my ($text, $what) = @_;
    return $text unless defined $text && !ref $text;
    $text =~ s{\$(TEST_NGINX_\w+)}{
        $ENV{$1} // die "unknown variable \$$1 in $what\n"
    }ge;
    return $text;
}

sub _expand_deep {
    my ($value, $what) = @_;
    return [map { _expand_deep($_, $what) } @$value] if ref $value eq 'ARRAY';
    return _expand($value, $what);
}

sub _section {
    my ($block, $name) = @_;
    return _expand_deep(scalar $block->$name, "--- $name");
}

sub _instance {
    my ($which) = @_;
    my $instance = defined $which && $which eq 'second' ? $second_nginx
                                                        : $nginx;
    die 'no ' . ($which // 'block') . " nginx is running\n" unless $instance;
    return $instance;
}

sub _run_code {
    my ($block, $section) = @_;
    my $code = $block->$section;
    return 1 unless defined $code;
    my $ok = eval "package $test_package;\n#line 1 \""
        . $block->name . " --- $section\"\n$code\n;1";
    return 1 if $ok;
    Test::More::fail($block->name . " - --- $section died");
    diag($@);
    return 0;
}

# Running, flushed, and a new session (db 0, no AUTH) for redis().
sub _ensure_redis {
    $redis_is_ours //= redis_running() ? 0 : 1;
    redis_start();    # also closes the previous block's session
    redis_flush();
    return;
}

# --- exported helpers ----------------------------------------------------

sub wait_for {
    my ($cond, $timeout, $what) = @_;
    $timeout //= 10;
    my $value = wait_until($cond, $timeout);
    return $value if $value;
    diag("timed out after ${timeout}s waiting for $what"
         . ($@ ? " (last error: $@)" : '')) if defined $what;
    return 0;
}

sub nginx_pid             { return _instance($_[0])->pid }
sub worker_pids           { return _instance($_[0])->worker_pids }
sub nginx_reload          { return _instance($_[0])->reload }
sub error_log_since_block { return _instance($_[0])->error_log_since_start }
sub block_responses       { return [@responses] }

sub servroot {
    my ($which) = @_;
    return $ENV{TEST_NGINX_SERVROOT} . 2 if ($which // '') eq 'second';
    return $ENV{TEST_NGINX_SERVROOT};
}

sub _module_path {
    return undef if $ENV{TEST_NGINX_NO_MODULE};
    my $module = $ENV{TEST_NGINX_MODULE};
    die "$module does not exist: build the module first: make\n"
        unless -f $module;
    return $module;
}

sub _config_text {
    my (%sections) = @_;
    return build_config(
        %sections,
        module    => _module_path(),
        log_level => $ENV{TEST_NGINX_LOG_LEVEL},
        valgrind  => $VALGRIND,
    );
}

sub start_second_nginx {
    my ($server_config, %opt) = @_;
    stop_second_nginx();
    my %from_block;
    if ($current_block) {
        %from_block = map { ($_ => _section($current_block, $_)) }
            qw(main_config event_config http_config);
    }
    my $port = $opt{port} // $ENV{TEST_NGINX_SERVER_PORT2};
    my $instance = Test::CacheGuard::Nginx->new(
        servroot => servroot('second'), port => $port, valgrind => $VALGRIND);
    $instance->prepare;
    $instance->write_config(_config_text(
        (map { ($_ => _expand($opt{$_} // $from_block{$_}, $_)) }
            qw(main_config event_config http_config)),
        server_config => _expand($server_config, 'the second server config'),
        port          => $port,
    ));
    unless ($instance->start) {
        die 'the second nginx did not start: ' . $instance->start_error
          . "\n" . $instance->stderr_output . $instance->error_log_since_start;
    }
    $second_nginx = $instance;
    return 1;
}

sub stop_second_nginx {
    my $instance = $second_nginx or return;
    undef $second_nginx;
    $instance->stop;
    _check_valgrind($instance, 'second nginx');
    return;
}

# --- the block runner ------------------------------------------------------

# As in Test::Nginx: $code->($block) is called for every block before it
# runs, and may change it with $block->set_value($section, $text).
sub add_block_preprocessor {
    my ($code) = @_;
    push @block_preprocessors, $code;
    return;
}

sub run_tests {
    $test_package = caller;
    Test::More::plan('no_plan') unless Test::Builder->new->has_plan;
    local $SIG{INT}  = sub { exit 130 };
    local $SIG{TERM} = sub { exit 143 };
    _module_path();
    origin_start();
    for my $block (blocks()) {
        $_->($block) for @block_preprocessors;
        _run_block($block);
    }
    return;
}

sub _run_block {
    my ($block) = @_;
    my $name = $block->name;
    if ($VALGRIND && defined $block->skip_valgrind) {
        note("$name: skipped under valgrind");
        return;
    }
    $current_block = $block;
    @responses = ();
    unless (eval { _run_block_steps($block); 1 }) {
        Test::More::fail("$name - harness error");
        diag($@);
    }
    _run_code($block, 'cleanup');
    stop_second_nginx();
    if ($nginx) {
        $nginx->stop;
        _check_valgrind($nginx, $name);
        undef $nginx;
    }
    undef $current_block;
    return;
}

sub _run_block_steps {
    my ($block) = @_;
    my $name = $block->name;
    origin_reset();
    _ensure_redis();

    $nginx = Test::CacheGuard::Nginx->new(
        servroot => $ENV{TEST_NGINX_SERVROOT},
        port     => $ENV{TEST_NGINX_SERVER_PORT},
        valgrind => $VALGRIND,
    );
    $nginx->prepare;
    _run_code($block, 'setup');
    _write_user_files(_section($block, 'user_files'));
    $nginx->write_config(_config_text(
        main_config   => _section($block, 'main_config'),
        event_config  => _section($block, 'event_config'),
        http_config   => _section($block, 'http_config'),
        server_config => _section($block, 'config'),
        port          => $ENV{TEST_NGINX_SERVER_PORT},
    ));
    my $started = $nginx->start;

    if (defined $block->must_die) {
        ok(!$started, "$name - nginx failed to start (must_die)");
        _check_logs($block, $nginx->stderr_output, $started);
        return;
    }
    unless ($started) {
        Test::More::fail("$name - nginx started");
        diag($nginx->start_error . "\n" . $nginx->stderr_output
             . _tail($nginx->error_log_since_start, 30));
        return;
    }

    _run_code($block, 'init') or return;
    _run_requests($block);
    if (my $seconds = $block->wait) {
        sleep $seconds;
    }
    _run_code($block, 'check');
    _check_logs($block, '', 1);
    return;
}

sub _tail {
    my ($text, $count) = @_;
    my @lines = split /\n/, $text;
    splice @lines, 0, @lines - $count if @lines > $count;
    return join '', map { "$_\n" } @lines;
}

sub _write_user_files {
    my ($text) = @_;
    return unless defined $text;
    my ($file, %content, @order);
    for my $line (split /^/, $text) {
        if ($line =~ /^>>> (\S+)\s*$/) {
            $file = $1;
            die "user_files: bad path '$file'\n"
                if $file =~ m{^/} || $file =~ m{(?:^|/)\.\.(?:/|$)};
            push @order, $file;
            $content{$file} = '';
            next;
        }
        die "user_files: text before the first '>>> path' line\n"
            unless defined $file;
        $content{$file} .= $line;
    }
    for my $path (@order) {
        my $full = "$ENV{TEST_NGINX_HTML_DIR}/$path";
        (my $dir = $full) =~ s{/[^/]+$}{};
        make_path($dir);
        open my $fh, '>:raw', $full or die "cannot write $full: $!\n";
        print {$fh} $content{$path};
        close $fh or die "cannot write $full: $!\n";
    }
    return;
}

# "GET /a" [+ "\nbody"] -> (method, target, version, body)
sub _parse_request {
    my ($text) = @_;
    my ($line, $body) = split /\n/, $text, 2;
    my ($method, $target, $version) =
        $line =~ m{^\s*(\S+)\s+(\S+)(?:\s+(HTTP/\d\.\d))?\s*$}
        or die "bad request line '$line'\n";
    $body =~ s/\n\z// if defined $body;
    return ($method, $target, $version // 'HTTP/1.1',
            defined $body && length $body ? $body : undef);
}

sub _run_requests {
    my ($block) = @_;
    my $pipelined = _section($block, 'pipelined_requests');
    my $request   = _section($block, 'request');
    return unless defined $request || defined $pipelined;

    my $timeout = $block->timeout || $DEFAULT_REQUEST_TIMEOUT;
    my $port    = $ENV{TEST_NGINX_SERVER_PORT};

    my $texts = $pipelined // $request;
    my @requests = map { [_parse_request($_)] }
        ref $texts eq 'ARRAY' ? @$texts : ($texts);
    # more_headers: one text for every request, or one item per request.
    my @headers = map {
        my $text = _expected($block, 'more_headers', $_, scalar @requests);
        [grep { /\S/ } split /\n/, $text // ''];
    } 0 .. $#requests;
    my $bytes = sub {
        my ($i, $connection) = @_;
        my ($method, $target, $version, $body) = @{$requests[$i]};
        return build_request(method => $method, path => $target,
            version => $version, body => $body, headers => $headers[$i],
            connection => $connection);
    };

    if (defined $pipelined) {
        # One connection: all but the last request keep it open.
        my $data = join '', map {
            $bytes->($_, $_ < $#requests ? 'keep-alive' : 'close');
        } 0 .. $#requests;
        @responses = @{exchange([{
            port    => $port,
            data    => $data,
            methods => [map { $_->[0] } @requests],
        }], $timeout)->[0]};
    } else {
        for my $i (0 .. $#requests) {
            push @responses, exchange([{
                port    => $port,
                data    => $bytes->($i),
                methods => [$requests[$i][0]],
            }], $timeout)->[0][0];
        }
    }
    for my $i (0 .. $#responses) {
        _check_response($block, $responses[$i], $i, scalar @responses);
    }
    return;
}

# The expectation of section $name for request $i of $count (undef: none).
sub _expected {
    my ($block, $name, $i, $count) = @_;
    my $value = _section($block, $name);
    return undef unless defined $value;
    return $value unless ref $value eq 'ARRAY';
    die "--- $name has " . @$value . " items for $count requests\n"
        unless @$value == $count;
    return $value->[$i];
}

sub _check_response {
    my ($block, $res, $i, $count) = @_;
    my $label = $block->name . ' -';
    my $suffix = $count > 1 ? " (req $i)" : '';
    diag($block->name . "$suffix: $res->{error}") if $res->{error};

    if (defined(my $code = _expected($block, 'error_code', $i, $count))) {
        $code =~ s/^\s+|\s+$//g;
        is($res->{status}, $code, "$label status code ok$suffix");
    }
    if (defined(my $body = _expected($block, 'response_body', $i, $count))) {
        if (ref $body eq 'Regexp') {
            like($res->{body}, $body, "$label response_body ok$suffix");
        } else {
            is($res->{body}, $body, "$label response_body ok$suffix");
        }
    }
    if (defined(my $pattern =
            _expected($block, 'response_body_like', $i, $count))) {
        unless (ref $pattern eq 'Regexp') {
            chomp $pattern;
            $pattern = qr/$pattern/s;
        }
        like($res->{body}, $pattern, "$label response_body_like ok$suffix");
    }
    for my $section (qw(response_headers response_headers_like)) {
        my $lines = _expected($block, $section, $i, $count);
        next unless defined $lines;
        _check_headers($res, $lines, $section eq 'response_headers_like',
            $label, $suffix);
    }
    return;
}

sub _check_headers {
    my ($res, $lines, $as_regex, $label, $suffix) = @_;
    for my $line (grep { /\S/ } split /\n/, $lines) {
        if ($line =~ /^\s*!\s*(\S+)\s*$/) {
            my $name = $1;
            ok(!exists $res->{headers}{lc $name},
               "$label header $name absent$suffix")
                or diag("$name: $res->{headers}{lc $name}");
            next;
        }
        my ($name, $value) = $line =~ /^\s*([^:\s]+)\s*:\s*(.*?)\s*$/
            or die "bad header expectation '$line'\n";
        my $actual = $res->{headers}{lc $name};
        if ($as_regex) {
            like($actual // '', qr/$value/, "$label header $name like$suffix");
        } else {
            is($actual, $value, "$label header $name ok$suffix");
        }
    }
    return;
}

sub _log_patterns {
    my ($value) = @_;
    return () unless defined $value;
    return map { _log_patterns($_) } @$value if ref $value eq 'ARRAY';
    return ($value) if ref $value eq 'Regexp';
    return grep { length } split /\n/, $value;
}

sub _log_has {
    my ($log, $pattern) = @_;
    return $log =~ $pattern if ref $pattern eq 'Regexp';
    return index($log, $pattern) >= 0;
}

sub _matching_lines {
    my ($log, $pattern) = @_;
    my @lines = grep { _log_has($_, $pattern) } split /\n/, $log;
    splice @lines, 5 if @lines > 5;
    return join '', map { "    $_\n" } @lines;
}

# error_log / no_error_log against the block's part of error.log, plus
# $extra (nginx's stderr for must_die blocks).  While nginx runs, lines
# that must appear are waited for.
sub _check_logs {
    my ($block, $extra, $running) = @_;
    my $label = $block->name . ' -';
    my @wanted   = _log_patterns(_section($block, 'error_log'));
    my @unwanted = _log_patterns(_section($block, 'no_error_log'));
    return unless @wanted || @unwanted;
    my $log = sub { $extra . $nginx->error_log_since_start };
    wait_until(sub {
        my $text = $log->();
        return !grep { !_log_has($text, $_) } @wanted;
    }, $LOG_WAIT) if @wanted && $running;
    my $text = $log->();
    for my $pattern (@wanted) {
        ok(_log_has($text, $pattern),
           "$label pattern \"$pattern\" in error.log")
            or diag("the log ends with:\n" . _tail($text, 10));
    }
    for my $pattern (@unwanted) {
        ok(!_log_has($text, $pattern),
           "$label no pattern \"$pattern\" in error.log")
            or diag(_matching_lines($text, $pattern));
    }
    return;
}

sub _check_valgrind {
    my ($instance, $label) = @_;
    return unless $VALGRIND;
    my ($errors, $report) = $instance->valgrind_errors;
    return unless $errors;
    Test::More::fail("$label - valgrind reported $errors errors");
    diag($report);
    return;
}

END {
    local $?;
    stop_second_nginx();
    $nginx->stop if $nginx;
    origin_stop();
    redis_stop() if $redis_is_ours;
}

1;
