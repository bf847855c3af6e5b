package Test::CacheGuard::TLS;

# TLS for the tests: a test PKI made with the openssl command line, and
# redis-server processes that speak only TLS (--port 0 --tls-port P).
#
#   tls_certs()      generate the PKI once (reused while the directory
#                    holds a complete set of this recipe), return a hashref
#                    of absolute paths:
#                      ca, ca_key              the test CA
#                      other_ca, other_ca_key  a second CA, unrelated
#                      server, server_key      SAN DNS:redis.test,
#                                              IP:127.0.0.1, EKU serverAuth
#                                              and clientAuth, by the CA
#                      client, client_key      CN=cache-guard test client,
#                                              EKU clientAuth, by the CA
#                      wrong_name, wrong_name_key   SAN DNS:other.test only
#                      expired, expired_key    the server's SAN, valid
#                                              2020-01-01 to 2020-01-02
#                      untrusted, untrusted_key  the server's SAN, signed
#                                              by the other CA
#                      other_client, other_client_key  a client certificate
#                                              by the other CA
#                    Keys are EC prime256v1.  Files: t/servroot-tls/pki/
#                    (ca.crt, ca.key, server.crt, server.key, ...).
#   tls_port($n)     the n-th port for TLS servers: $TEST_NGINX_TLS_PORT
#                    (6420 by default) + $n, n = 0 .. 9
#   tls_redis_start(%opt)  start redis-server with TLS only, wait until it
#                    answers PING over TLS, return its pid.  %opt:
#                      port         default tls_port(0)
#                      cert         which server certificate: server
#                                   (default), wrong_name, expired,
#                                   untrusted; or a path (then key => path)
#                      ca           path of the CA file it trusts for
#                                   client certificates (default: the CA)
#                      auth_clients no | optional | yes (default no)
#                      args         arrayref of more redis-server arguments
#                    A server already on that port (ours) is stopped first.
#   tls_redis_stop($port)  SIGKILL, reap, wait until the port refuses
#   tls_redis_stop_all()   every one still running (also done at exit)
#   tls_redis_pids()       port => pid of the running ones
#   tls_redis_cli(%opt)    run redis-cli over TLS, return ($exit, $output)
#                    (stdout and stderr, chomped).  %opt: port, ca (a path,
#                    or undef for none), cert and key (paths, or none),
#                    insecure => 1, cmd => [arguments]
#   tls_s_client(%opt)     run openssl s_client against 127.0.0.1:port and
#                    return ($verify_code, $verify_text, $output): the
#                    numeric "Verify return code" (0 is OK) and its text,
#                    e.g. "certificate has expired".  %opt: port, ca,
#                    hostname (-verify_hostname) or ip (-verify_ip),
#                    cert and key for a client certificate
#
# Each server's directory (its log, redis.log) is t/servroot-tls/redis-PORT/.
# $TEST_NGINX_TLS_DIR is set to the PKI's directory when this module loads,
# so that a block's configuration can name the files
# (tls_ca=$TEST_NGINX_TLS_DIR/ca.crt); call tls_certs() before nginx starts.

use strict;
use warnings;

use Exporter qw(import);
use Fcntl qw(:flock);
use File::Path qw(make_path remove_tree);
use POSIX ();

use Test::CacheGuard::Util qw(repo_root wait_until port_accepts);
use Test::CacheGuard::Spawn qw(spawn reap_kill exited port_free
                               stop_listener);

our @EXPORT = qw(
    tls_certs tls_port tls_redis_start tls_redis_stop tls_redis_stop_all
    tls_redis_pids tls_redis_cli tls_s_client tls_dir
);

$ENV{TEST_NGINX_TLS_PORT} = 6420
    unless defined $ENV{TEST_NGINX_TLS_PORT}
           && length $ENV{TEST_NGINX_TLS_PORT};

$ENV{TEST_NGINX_TLS_DIR} = tls_dir() . '/pki';

# Bump when the recipe below changes: a cached PKI of another recipe is
# made again.
my $RECIPE = 1;

my $START_TIMEOUT = 20;
my $STOP_TIMEOUT  = 20;

my %servers;    # port => pid

sub tls_dir  { return repo_root() . '/t/servroot-tls' }
sub tls_port { my ($n) = @_; return $ENV{TEST_NGINX_TLS_PORT} + ($n // 0) }

my @LEAVES = (
    # name, signing CA, extension section, subject
    [server       => 'ca',       'server',     '/CN=redis.test'],
    [client       => 'ca',       'client',     '/CN=cache-guard test client'],
    [wrong_name   => 'ca',       'wrong_name', '/CN=other.test'],
    [expired      => 'ca',       'server',     '/CN=redis.test'],
    [untrusted    => 'other_ca', 'server',     '/CN=redis.test'],
    [other_client => 'other_ca', 'client',     '/CN=cache-guard other client'],
);

my $EXTENSIONS = <<'CNF';
[server]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth,clientAuth
subjectAltName = DNS:redis.test,IP:127.0.0.1

[wrong_name]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth,clientAuth
subjectAltName = DNS:other.test

[client]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
CNF

# `openssl ca` is the way OpenSSL 3.0 sets a start date in the past
# (x509 -not_before arrived in 3.4).
my $CA_CONF = <<'CNF';
[ca]
default_ca = test_ca

[test_ca]
dir = .
database = $dir/ca-db/index.txt
new_certs_dir = $dir/ca-db
serial = $dir/ca-db/serial
certificate = $dir/ca.crt
private_key = $dir/ca.key
default_md = sha256
policy = anything
unique_subject = no
copy_extensions = none

[anything]
commonName = supplied
CNF

sub _file_name { my ($name) = @_; (my $f = $name) =~ tr/_/-/; return $f }

sub _paths {
    my ($dir) = @_;
    my %p;
    for my $name ('ca', 'other_ca', map { $_->[0] } @LEAVES) {
        my $f = _file_name($name);
        $p{$name} = "$dir/$f.crt";
        $p{"${name}_key"} = "$dir/$f.key";
    }
    return \%p;
}

sub _openssl {
    my ($dir, @args) = @_;
    my $out = qx{cd '$dir' && openssl @args 2>&1};
    die "openssl @args failed (exit $?):\n$out" if $?;
    return $out;
}

sub _write {
    my ($path, $text) = @_;
    open my $fh, '>', $path or die "$path: $!\n";
    print {$fh} $text;
    close $fh or die "$path: $!\n";
    return;
}

sub _make_pki {
    my ($dir) = @_;
    make_path("$dir/ca-db");
    _write("$dir/extensions.cnf", $EXTENSIONS);
    _write("$dir/ca.cnf", $CA_CONF);
    _write("$dir/ca-db/index.txt", '');
    _write("$dir/ca-db/serial", "1000\n");
    my $ec = '-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes';
    my $ca_ext = '-addext basicConstraints=critical,CA:TRUE '
               . '-addext keyUsage=critical,keyCertSign,cRLSign';
    _openssl($dir, "req -x509 $ec -keyout ca.key -out ca.crt -days 3650 "
        . "-subj '/CN=cache-guard test CA' $ca_ext");
    _openssl($dir, "req -x509 $ec -keyout other-ca.key -out other-ca.crt "
        . "-days 3650 -subj '/CN=cache-guard other CA' $ca_ext");
    my $serial = 100;
    for my $leaf (@LEAVES) {
        my ($name, $ca, $section, $subject) = @$leaf;
        my $f = _file_name($name);
        my $ca_f = _file_name($ca);
        _openssl($dir, "req -new $ec -keyout $f.key -out $f.csr "
            . "-subj '$subject'");
        if ($name eq 'expired') {
            _openssl($dir, "ca -batch -config ca.cnf -notext "
                . "-startdate 20200101000000Z -enddate 20200102000000Z "
                . "-extfile extensions.cnf -extensions $section "
                . "-in $f.csr -out $f.crt");
        } else {
            _openssl($dir, "x509 -req -in $f.csr -CA $ca_f.crt "
                . "-CAkey $ca_f.key -set_serial " . $serial++ . " -days 3650 "
                . "-extfile extensions.cnf -extensions $section "
                . "-out $f.crt");
        }
        unlink "$dir/$f.csr";
    }
    chmod 0644, glob "$dir/*.key";
    _write("$dir/complete", "$RECIPE\n");
    return;
}

sub _complete {
    my ($dir) = @_;
    open my $fh, '<', "$dir/complete" or return 0;
    my $recipe = <$fh> // '';
    chomp $recipe;
    return 0 unless $recipe eq $RECIPE;
    return !grep { !-s $_ } values %{ _paths($dir) };
}

# Several test files may ask at once (prove -j): one makes the PKI under
# a lock, in a directory of its own, then renames it into place.
sub tls_certs {
    my $root = tls_dir();
    my $dir = "$root/pki";
    return _paths($dir) if _complete($dir);
    make_path($root);
    open my $lock, '>', "$root/pki.lock" or die "$root/pki.lock: $!\n";
    flock $lock, LOCK_EX or die "flock: $!\n";
    unless (_complete($dir)) {
        my $tmp = "$root/pki.tmp.$$";
        remove_tree($tmp, "$dir");
        _make_pki($tmp);
        rename $tmp, $dir or die "rename $tmp $dir: $!\n";
    }
    close $lock;
    return _paths($dir);
}

sub tls_redis_pids { return %servers }

sub tls_redis_cli {
    my (%opt) = @_;
    my $port = $opt{port} // tls_port(0);
    my @cmd = ('redis-cli', '--tls', '-h', '127.0.0.1', '-p', $port);
    push @cmd, '--cacert', $opt{ca} if defined $opt{ca};
    push @cmd, '--cert', $opt{cert}, '--key', $opt{key} if defined $opt{cert};
    push @cmd, '--insecure' if $opt{insecure};
    push @cmd, @{ $opt{cmd} // ['PING'] };
    my $out = _capture(@cmd);
    return ($? >> 8, $out);
}

sub tls_s_client {
    my (%opt) = @_;
    my $port = $opt{port} // tls_port(0);
    my @cmd = ('openssl', 's_client', '-connect', "127.0.0.1:$port",
               '-servername', $opt{hostname} // 'redis.test');
    push @cmd, '-CAfile', $opt{ca} if defined $opt{ca};
    push @cmd, '-verify_hostname', $opt{hostname} if defined $opt{hostname};
    push @cmd, '-verify_ip', $opt{ip} if defined $opt{ip};
    push @cmd, '-cert', $opt{cert}, '-key', $opt{key} if defined $opt{cert};
    my $out = _capture(@cmd);
    my ($code, $text) = $out =~ /Verify return code: (\d+) \(([^)]*)\)/;
    return ($code, $text, $out);
}

# Run @cmd (no shell), stdin from /dev/null; its stdout and stderr.
sub _capture {
    my (@cmd) = @_;
    my $pid = open my $fh, '-|' // die "fork: $!\n";
    if ($pid == 0) {
        open STDIN, '<', '/dev/null';
        open STDERR, '>&', \*STDOUT;
        exec { $cmd[0] } @cmd or POSIX::_exit(127);
    }
    my $out = do { local $/; <$fh> } // '';
    close $fh;
    $out =~ s/\s+\z//;
    return $out;
}

sub tls_redis_start {
    my (%opt) = @_;
    my $port = $opt{port} // tls_port(0);
    my $pki = tls_certs();
    my $which = $opt{cert} // 'server';
    my ($cert, $key) = exists $pki->{$which}
                     ? ($pki->{$which}, $pki->{"${which}_key"})
                     : ($which, $opt{key});
    die "tls_redis_start: no key for certificate $cert\n" unless defined $key;
    my $auth = $opt{auth_clients} // 'no';
    tls_redis_stop($port) if $servers{$port};
    die "127.0.0.1:$port is in use (set TEST_NGINX_TLS_PORT)\n"
        if port_accepts($port);

    my $dir = tls_dir() . "/redis-$port";
    make_path($dir);
    my @cmd = (
        'redis-server',
        '--port',              0,
        '--tls-port',          $port,
        '--bind',              '127.0.0.1',
        '--tls-cert-file',     $cert,
        '--tls-key-file',      $key,
        '--tls-ca-cert-file',  $opt{ca} // $pki->{ca},
        '--tls-auth-clients',  $auth,
        '--save',              '',
        '--appendonly',        'no',
        '--daemonize',         'no',
        '--dir',               $dir,
        '--logfile',           "$dir/redis.log",
        @{ $opt{args} // [] },
    );
    my $pid = spawn(\@cmd, log => "$dir/stdout.log");
    $servers{$port} = $pid;
    # --insecure: the expired and wrong-name certificates answer too; the
    # client certificate: --tls-auth-clients yes answers too.
    my $up = wait_until(sub {
        die "redis-server exited\n" if exited($pid);
        my ($rc, $out) = tls_redis_cli(port => $port, insecure => 1,
            cert => $pki->{client}, key => $pki->{client_key});
        return $rc == 0 && $out eq 'PONG';
    }, $START_TIMEOUT);
    return $pid if $up;
    my $why = $@ || "no PONG within ${START_TIMEOUT}s";
    tls_redis_stop($port);
    die "redis-server with TLS on port $port did not start: $why"
      . "see $dir/redis.log\n";
}

sub tls_redis_stop {
    my ($port) = @_;
    my $pid = delete $servers{$port} or return 1;
    return stop_listener($pid, $port, 'redis-server', $STOP_TIMEOUT);
}

sub tls_redis_stop_all {
    tls_redis_stop($_) for sort keys %servers;
    return 1;
}

END {
    local $?;
    eval { tls_redis_stop_all() };
}

1;
