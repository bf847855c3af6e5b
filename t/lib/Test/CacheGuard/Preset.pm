package Test::CacheGuard::Preset;

# The preambles the behaviour tests share: what every block of a file gets
# before it runs (the zone, Redis, the origin's upstream, a guarded
# location, the resets in init), written once here rather than copied into
# each file's add_block_preprocessor.
#
#     use Test::CacheGuard::Preset;
#     guard_preamble(
#         zone     => '8m',
#         redis    => 'timeout=1s',
#         upstream => 1,
#         config   => guard_location(),
#         init     => 'origin_reset(); redis_flush();',
#     );

use strict;
use warnings;

use Exporter 'import';
use Test::CacheGuard ();    # its import plans the tests: call it by name

our @EXPORT = qw(guard_preamble standard_preamble guard_http_config
                 guard_location admin_location startup_redis_timeout);

# http {} lines.  zone => SIZE: cache_guard_zone main size=SIZE;
# redis => ARGS: cache_guard_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT ARGS;
# (redis_port => the variable naming another port); upstream => 1, or the
# directives to add to it ('keepalive 16'): upstream origin, the test origin.
sub guard_http_config {
    my (%opt) = @_;
    my $text = '';
    $text .= "    cache_guard_zone main size=$opt{zone};\n" if $opt{zone};
    if (defined $opt{redis}) {
        my $port = $opt{redis_port} // 'TEST_NGINX_REDIS_PORT';
        $text .= "    cache_guard_redis 127.0.0.1:\$$port $opt{redis};\n";
    }
    if ($opt{upstream}) {
        my $more = $opt{upstream} eq '1' ? '' : " $opt{upstream};";
        $text .= '    upstream origin { server 127.0.0.1:'
               . "\$TEST_NGINX_ORIGIN_PORT;$more }\n";
    }
    return $text;
}

# A location guarded by zone main.  path ('/'), policy ('p.lua', in
# $TEST_NGINX_HTML_DIR), pass ('http://origin'), x_guard (the X-Guard
# header's value, '$cache_guard_status $cache_guard_level'; undef: no
# header), extra (directives, one a line, put before the header).
sub guard_location {
    my (%opt) = @_;
    my $path   = $opt{path}   // '/';
    my $policy = $opt{policy} // 'p.lua';
    my $pass   = $opt{pass}   // 'http://origin';
    my $guard  = exists $opt{x_guard} ? $opt{x_guard}
                                      : '$cache_guard_status $cache_guard_level';
    my $text = "    location $path {\n"
             . "        cache_guard main;\n"
             . "        cache_guard_policy \$TEST_NGINX_HTML_DIR/$policy;\n"
             . "        proxy_pass $pass;\n";
    $text .= join '', map { "        $_\n" } split /\n/, $opt{extra} // '';
    $text .= "        add_header X-Guard \"$guard\" always;\n" if defined $guard;
    return $text . "    }\n";
}

# A Redis time-out for blocks whose workers talk to Redis as they start:
# under valgrind a worker can stall past 1 s then (its first SUBSCRIBE
# times out and is made again a tick later).
sub startup_redis_timeout {
    return $ENV{TEST_NGINX_USE_VALGRIND} ? '5s' : '1s';
}

sub admin_location {
    return "    location /admin/ {\n        cache_guard_admin;\n    }\n";
}

# add_block_preprocessor for the whole file.  Every value may be a coderef,
# called with the block, that returns the text.
#   zone, redis, redis_port, upstream: http {} lines (guard_http_config),
#     then http_config, all put before the block's own http_config;
#   config: the block's config when it has none;
#   config_before, config_after: put around the block's own config;
#   user_files: the block's user_files when it has none;
#   user_files_after: added after the block's own user_files;
#   setup, init, cleanup: Perl code run before the block's own.
sub guard_preamble {
    my (%opt) = @_;
    Test::CacheGuard::add_block_preprocessor(sub {
        my ($block) = @_;
        my %o = map {
            ($_ => ref $opt{$_} eq 'CODE' ? $opt{$_}->($block) : $opt{$_})
        } keys %opt;
        my $http = guard_http_config(%o) . ($o{http_config} // '');
        $block->set_value('http_config', $http . ($block->http_config // ''))
            if length $http;
        if (defined $o{config} && !defined $block->config) {
            $block->set_value('config', $o{config});
        }
        if (defined $o{config_before} || defined $o{config_after}) {
            $block->set_value('config', ($o{config_before} // '')
                . ($block->config // '') . ($o{config_after} // ''));
        }
        if (defined $o{user_files} && !defined $block->user_files) {
            $block->set_value('user_files', $o{user_files});
        }
        if (defined $o{user_files_after}) {
            $block->set_value('user_files',
                ($block->user_files // '') . $o{user_files_after});
        }
        for my $code (qw(setup init cleanup)) {
            next unless defined $o{$code};
            $block->set_value($code,
                "$o{$code}\n" . ($block->$code // ''));
        }
    });
    return;
}

# The behaviour tests' usual preamble: an 8 MiB zone "main", Redis with a
# 1 s time-out, the upstream "origin", guard_location() as the block's
# config when it has none, and the resets in init; any option overrides.
sub standard_preamble {
    my (%opt) = @_;
    return guard_preamble(
        zone     => '8m',
        redis    => 'timeout=1s',
        upstream => 1,
        config   => guard_location(),
        init     => 'origin_reset(); redis_flush();',
        %opt,
    );
}

1;
