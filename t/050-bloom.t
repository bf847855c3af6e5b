# Bloom filters: cache_guard_bloom's configuration errors, a filter filled
# from a file when nginx reads its configuration (and again on reload), its
# false positive rate measured through the admin API, the memory it takes,
# and what a reload keeps (not under valgrind: nginx reloads need a master
# process, and valgrind runs nginx without one).
use lib 't/lib';
use Test::CacheGuard 'no_plan';
use Test::CacheGuard::Preset;
use Test::CacheGuard::Status;
use Test::CacheGuard::Util qw(write_lines);

use JSON::PP qw(decode_json);

guard_preamble(
    config_before => sub { defined $_[0]->must_die ? undef : admin_location() },
);

# "GET /admin/bloom/NAME?item=X" for many items, 200 at a time: the decoded
# answers, in order.
sub bloom_test {
    my ($name, @items) = @_;
    my @answers;
    while (my @batch = splice @items, 0, 200) {
        my $res = http_concurrent(scalar @batch, sub {
            "/admin/bloom/$name?item=$batch[$_[0]]"
        });
        for my $r (@$res) {
            die "GET /admin/bloom/$name: $r->{status} $r->{body}\n"
                unless $r->{status} == 200;
            push @answers, decode_json($r->{body});
        }
    }
    return @answers;
}

sub present_count {
    return scalar grep { $_->{present} } bloom_test(@_);
}

run_tests();

__DATA__

=== TEST 1: capacity out of range is refused, naming the value
--- http_config
    cache_guard_bloom users capacity=0 error_rate=0.01;
--- must_die
--- error_log
invalid bloom "capacity=0", capacity must be 1 to 1000000000 items



=== TEST 2: capacity above a billion is refused
--- http_config
    cache_guard_bloom users capacity=1000000001 error_rate=0.01;
--- must_die
--- error_log
invalid bloom "capacity=1000000001"



=== TEST 3: error_rate must be above 0 and below 0.5
--- http_config
    cache_guard_bloom users capacity=1000 error_rate=0.5;
--- must_die
--- error_log
invalid bloom "error_rate=0.5", error_rate must be a number above 0 and below 0.5



=== TEST 4: error_rate must be a number
--- http_config
    cache_guard_bloom users capacity=1000 error_rate=1%;
--- must_die
--- error_log
invalid bloom "error_rate=1%"



=== TEST 5: error_rate 0 is refused
--- http_config
    cache_guard_bloom users capacity=1000 error_rate=0;
--- must_die
--- error_log
invalid bloom "error_rate=0"



=== TEST 6: capacity and error_rate are required
--- http_config
    cache_guard_bloom users capacity=1000;
--- must_die
--- error_log
bloom "users" needs capacity= and error_rate=



=== TEST 7: an unknown parameter is refused
--- http_config
    cache_guard_bloom users capacity=1000 error_rate=0.01 size=1m;
--- must_die
--- error_log
invalid bloom parameter "size=1m"



=== TEST 8: an unknown mode is refused
--- http_config
    cache_guard_bloom users capacity=1000 error_rate=0.01 mode=strict;
--- must_die
--- error_log
invalid bloom parameter "mode=strict"



=== TEST 9: a duplicate name is refused
--- http_config
    cache_guard_bloom users capacity=1000 error_rate=0.01;
    cache_guard_bloom users capacity=2000 error_rate=0.01;
--- must_die
--- error_log
duplicate bloom "users"



=== TEST 10: a name that is no path segment is refused
--- http_config
    cache_guard_bloom us/ers capacity=1000 error_rate=0.01;
--- must_die
--- error_log
invalid bloom name "us/ers"



=== TEST 11: a file that cannot be read is refused at configuration time
--- http_config
    cache_guard_bloom users capacity=1000 error_rate=0.01
                      file=$TEST_NGINX_HTML_DIR/missing.txt;
--- must_die
--- error_log eval
qr{bloom "users": cannot read ".*/missing\.txt" \(2: No such file or directory\)}



=== TEST 12: a directory is no file
--- http_config
    cache_guard_bloom users capacity=1000 error_rate=0.01
                      file=$TEST_NGINX_HTML_DIR;
--- must_die
--- error_log eval
qr{bloom "users": ".*/html" is not a file}



=== TEST 13: a line longer than 4096 bytes in the file is refused, with its number
--- http_config
    cache_guard_bloom users capacity=1000 error_rate=0.01
                      file=$TEST_NGINX_HTML_DIR/users.txt;
--- setup
write_lines('users.txt', 'user:1', 'x' x 4097, 'user:3');
--- must_die
--- error_log eval
qr{bloom "users": line 2 of ".*/users\.txt" is longer than 4096 bytes}



=== TEST 14: redis_key without cache_guard_redis is refused, naming the line
--- http_config
    cache_guard_bloom users capacity=1000 error_rate=0.01 redis_key=bf:users;
--- must_die
--- error_log eval
qr{bloom "users" has redis_key=, but cache_guard_redis is not configured in .*nginx\.conf:\d+}



=== TEST 15: sync= without redis_key is refused
--- http_config
    cache_guard_bloom users capacity=1000 error_rate=0.01 sync=1s;
--- must_die
--- error_log
bloom "users": sync= needs redis_key=



=== TEST 16: a bad sync time is refused
--- http_config
    cache_guard_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
    cache_guard_bloom users capacity=1000 error_rate=0.01 redis_key=k
                      sync=often;
--- must_die
--- error_log
invalid bloom "sync=often", a time such as 10s is expected



=== TEST 17: a filter larger than a Redis string is refused with a redis_key
--- http_config
    cache_guard_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
    cache_guard_bloom users capacity=1000000000 error_rate=0.001
                      redis_key=bf:users;
--- must_die
--- error_log eval
qr{bloom "users" takes 2111\d{6} bytes, more than a Redis string holds \(512m\)}



=== TEST 18: an error_rate no size can reach is refused
--- http_config
    cache_guard_bloom users capacity=1000 error_rate=1e-17;
--- must_die
--- error_log
bloom "users": error_rate 1e-17 is too small for capacity 1000



=== TEST 19: 100,000 items from a file: all present, at most 1.3% false positives among 10,000 others
--- http_config
    cache_guard_bloom users capacity=100000 error_rate=0.01
                      file=$TEST_NGINX_HTML_DIR/users.txt;
--- setup
write_lines('users.txt', map { "user:$_" } 1 .. 100_000);
--- check
my $info = bloom_info('users');
ok($info->{loaded}, 'loaded at start-up');
ok($info->{items} > 99_000 && $info->{items} <= 100_000,
   "about 100,000 items counted ($info->{items})");
my @sample = map { 'user:' . (1 + int(rand(100_000))) } 1 .. 1000;
is(present_count('users', @sample), 1000, '1,000 sampled items all present');
my $fp = present_count('users', map { "other:$_" } 1 .. 10_000);
note("false positives: $fp of 10,000");
ok($fp <= 130, "at most 1.3% false positives: $fp of 10,000");
--- error_log eval
qr{bloom "users" loaded 100000 items from ".*/users\.txt" \(\d+ new\) in \d+ ms}
--- no_error_log
[error]
[alert]



=== TEST 20: the memory a filter takes, and its settings, through GET /admin/bloom/NAME
--- http_config
    cache_guard_bloom users capacity=100000 error_rate=0.01 mode=shadow;
    cache_guard_bloom ids capacity=100000 error_rate=0.001;
--- check
my $users = bloom_info('users');
is($users->{filter}, 'users', 'name');
is($users->{mode}, 'shadow', 'mode');
is($users->{capacity}, 100000, 'capacity');
is($users->{error_rate}, 0.01, 'error_rate');
is($users->{bytes}, $users->{blocks} * 32, 'bytes: 32 per block');
ok($users->{bits_per_item} > 10 && $users->{bits_per_item} < 11,
   "10 to 11 bits per item at 0.01 ($users->{bits_per_item})");
ok($users->{zone_bytes} > $users->{bytes}
   && $users->{zone_bytes} < $users->{bytes} + 128 * 1024,
   "the zone ($users->{zone_bytes}) holds the bitmap ($users->{bytes}) "
   . 'and little else');
ok(!$users->{loaded}, 'no file, nothing added: not loaded');
is($users->{items}, 0, 'no items');
is($users->{file}, undef, 'no file');
is($users->{redis_key}, undef, 'no redis_key');
my $ids = bloom_info('ids');
is($ids->{mode}, 'enforce', 'enforce by default');
ok($ids->{bits_per_item} > 16 && $ids->{bits_per_item} < 17.5,
   "16 to 17.5 bits per item at 0.001 ($ids->{bits_per_item})");
--- no_error_log
[error]
[alert]



=== TEST 21: a file changed, then a reload: new items present, old ones kept
--- skip_valgrind
--- http_config
    cache_guard_bloom users capacity=10000 error_rate=0.01
                      file=$TEST_NGINX_HTML_DIR/users.txt;
--- setup
write_lines('users.txt', map { "user:$_" } 1 .. 5000);
--- check
my $before = present_count('users', map { "new:$_" } 1 .. 500);
ok($before <= 5, "the items to come are absent but for false positives "
   . "($before of 500)");
write_lines('users.txt', (map { "user:$_" } 1 .. 5000),
            (map { "new:$_" } 1 .. 500));
ok(nginx_reload(), 'reloaded');
is(present_count('users', map { "new:$_" } 1 .. 500), 500,
   'the new items present');
is(present_count('users', map { "user:$_" } 1 .. 5000), 5000,
   'the old ones too');
my $info = bloom_info('users');
ok($info->{items} > 5400 && $info->{items} <= 5500,
   "items counted once across the reload ($info->{items})");
--- error_log eval
qr{bloom "users" loaded 5500 items from ".*/users\.txt" \(\d+ new\)}
--- no_error_log
[error]
[alert]



=== TEST 22: a reload with a file that became unreadable fails, the old configuration serves on
--- skip_valgrind
--- http_config
    cache_guard_bloom users capacity=1000 error_rate=0.01
                      file=$TEST_NGINX_HTML_DIR/users.txt;
--- setup
write_lines('users.txt', 'user:1');
--- check
unlink "$ENV{TEST_NGINX_HTML_DIR}/users.txt" or die;
kill 'HUP', nginx_pid();
ok(wait_for(sub { error_log_since_block() =~ /bloom "users": cannot read/ },
            10, 'the reload to fail'), 'the reload is refused');
my $r = http_get('/admin/bloom/users?item=user:1');
like($r->{body}, qr/"present": true/, 'the old filter still answers');
--- error_log eval
qr{bloom "users": cannot read ".*/users\.txt"}



=== TEST 23: a reload of the same size keeps what the admin API added; a new size starts afresh
--- skip_valgrind
--- http_config
    cache_guard_bloom users capacity=1000 error_rate=0.01;
--- check
my $r = http_request('POST', '/admin/bloom/users', body => "alice\nbob\n");
is($r->{status}, 200, 'added');
ok(nginx_reload(), 'reloaded');
my $info = bloom_info('users');
ok($info->{loaded}, 'still loaded after the reload');
is(present_count('users', 'alice', 'bob'), 2, 'the items are kept');
my $conf = servroot() . '/conf/nginx.conf';
open my $fh, '<', $conf or die;
my $text = do { local $/; <$fh> };
close $fh;
$text =~ s/capacity=1000 /capacity=5000 /;
open $fh, '>', $conf or die;
print {$fh} $text;
close $fh;
ok(nginx_reload(), 'reloaded with another capacity');
$info = bloom_info('users');
is($info->{capacity}, 5000, 'the new capacity');
ok(!$info->{loaded}, 'a new, empty filter: not loaded');
is(present_count('users', 'alice', 'bob'), 0, 'the items are gone');
--- no_error_log
[error]
[alert]
