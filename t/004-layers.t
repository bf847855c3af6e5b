# The source's structure stays true: each file of ngx_module/ sits in one
# layer, and includes (so calls) only headers of the files below it; what
# a .c offers is declared in its own header and nowhere else; no C file
# over 1,000 lines, no function over 150 lines but directive parsers; the
# README's "Source layout" names every file.
use strict;
use warnings;
use Test::More;
use File::Basename qw(basename dirname);
use Cwd qw(abs_path);

my $root = abs_path(dirname(__FILE__) . '/..');
my $dir = "$root/ngx_module";
my $P = 'ngx_http_cache_guard_';

# The layers, lowest first; within a layer a file may use the ones before
# it.  A new file goes here and in the README's "Source layout".
my @layers = (
    [core       => qw(types codec json log resp sbbf lines stats)],
    [services   => qw(breaker redis_conn redis redis_conf geo bloom bloom_sync key lua
                      policy_fields policy_rules policy store lock)],
    [request    => qw(respond ctx origin handler access filter variables)],
    [operations => qw(api metrics prometheus status purge warm admin)],
    [module     => qw(module)],
);

my (%rank, %layer, $n);
for my $l (@layers) {
    my ($name, @files) = @$l;
    for my $f (@files) {
        $rank{$f} = $n++;
        $layer{$f} = $name;
    }
}

sub slurp { local (@ARGV, $/) = @_; return scalar <> }

my @files = sort grep { !/dashboard/ }
            map { basename($_) } glob("$dir/${P}*.[ch]");
ok(scalar @files > 10, 'the sources are found');

my (%src, %base_of);
for my $f (@files) {
    my ($base) = $f =~ /^\Q$P\E(\w+)\.[ch]$/;
    $base_of{$f} = $base;
    $src{$f} = slurp("$dir/$f");
    ok(defined $rank{$base}, "$f has a layer")
        or diag("add \"$base\" to \@layers in t/004-layers.t and to the "
                . "README's Source layout");
}

# 1. includes go down
for my $f (@files) {
    my $me = $base_of{$f};
    next unless defined $rank{$me};
    my @bad;
    while ($src{$f} =~ /^#\s*include\s+"\Q$P\E(\w+)\.h"/mg) {
        my $to = $1;
        next if $to eq 'dashboard' || $to eq $me;
        if (!defined $rank{$to}) {
            push @bad, "$to.h (no layer)";
        } elsif ($layer{$to} eq $layer{$me} && $rank{$to} > $rank{$me}) {
            push @bad, "$to.h (it comes after $me in the $layer{$me} layer)";
        } elsif ($rank{$to} > $rank{$me}) {
            push @bad, "$to.h (the $layer{$to} layer, above $layer{$me})";
        }
    }
    is(join(', ', @bad), '', "$f includes only headers of files below it");
}

# 2. what a .c offers is declared in its own header, and only there
sub strip_comments { my $s = shift; $s =~ s{/\*.*?\*/}{}gs; return $s }

my %declared_in;
for my $h (grep { /\.h$/ } @files) {
    my $s = strip_comments($src{$h});
    while ($s =~ /\b(\Q$P\E\w+)\s*\(/g) {
        $declared_in{$1}{$h} = 1;
    }
    while ($s =~ /^extern\s+[^;]*?\b(\Q$P\E\w+)\s*(?:\[\s*\w*\s*\])?\s*;/mg) {
        $declared_in{$1}{$h} = 1;
    }
}

for my $c (grep { /\.c$/ } @files) {
    my $me = $base_of{$c};
    my $s = strip_comments($src{$c});
    my @offered;
    # nginx style: the type on one line, the name at column 0 on the next
    while ($s =~ /^(?!static\b)([a-z][^\n;{}()]*)\n(\Q$P\E\w+)\(/mg) {
        push @offered, $2;
    }
    # variables other files may use
    while ($s =~ /^(?!static\b)(?:const\s+)?[a-z_]\w*\s+\**(\Q$P\E\w+)(?:\[[^\]]*\])?\s*(?:=|;)/mg) {
        push @offered, $1;
    }
    my @wrong;
    for my $fn (@offered) {
        next if $fn eq "${P}module";          # the module, in types.h
        my @in = sort keys %{ $declared_in{$fn} // {} };
        my $own = "$P$me.h";
        push @wrong, "$fn (declared in: " . (join(' ', @in) || 'none') . ")"
            unless @in == 1 && $in[0] eq $own;
    }
    is(join('; ', @wrong), '',
       "what $c offers is declared in its own header only");

    # a call upward must not hide behind a prototype written in the .c
    my @protos;
    while ($s =~ /^(?:extern\s+)?(?!static\b|return\b)[a-z_][\w ]*?[\s*]+(\Q$P\E\w+)\s*\([^;{]*\)\s*;/mg) {
        push @protos, $1;
    }
    is(join(', ', @protos), '',
       "$c declares no other file's function (use its header, or pass a "
       . "callback down)");
}

# 3. sizes, and an opening comment that says what the file owns
for my $c (grep { /\.c$/ } @files) {
    like($src{$c}, qr{\A\s*/\*\n \* Copyright[^\n]*\n \*\n \* \S},
         "$c opens with what it owns");

    my $lines = () = $src{$c} =~ /\n/g;
    cmp_ok($lines, '<=', 1000, "$c has at most 1,000 lines");

    my @long;
    my @l = split /\n/, $src{$c};
    for my $i (1 .. $#l) {
        my ($name) = $l[$i] =~ /^(\Q$P\E\w+)\(/;
        next unless $name && $l[$i - 1] =~ /^[a-z]/;
        my $j = $i;
        my $sig = '';
        $sig .= $l[$j++] until $l[$j] eq '{' || $j > $#l;
        my $start = $j;
        $j++ until $j > $#l || $l[$j] eq '}';
        my $len = $j - $start + 1;
        next if $sig =~ /ngx_command_t \*cmd/;   # a directive parser
        push @long, "$name ($len lines)" if $len > 150;
    }
    is(join(', ', @long), '', "no function of $c is over 150 lines");
}

# 4. the README's table and config's list show the layers as they are
my $readme = slurp("$root/README.md");
my ($layout) = $readme =~ /^## Source layout\n(.*?)(?=^## |\z)/ms;
ok(defined $layout, 'the README has a "Source layout" section');
my %readme_layer = ($layout // '') =~ /^\| `(\w+)\.[ch]` \| (\w+) \|/mg;
for my $f (grep { /\.c$/ } @files) {
    my $me = $base_of{$f};
    is($readme_layer{$me} // 'missing', $layer{$me} // '?',
       "the README's Source layout puts $me.c in its layer");
}

my ($srcs) = slurp("$root/config") =~ /^cg_srcs="(.*?)"/ms;
my @listed = ($srcs // '') =~ /\Q$P\E(\w+)\.c/g;
my @want = grep { -f "$dir/$P$_.c" }
           sort { $rank{$a} <=> $rank{$b} } grep { defined $rank{$_} }
           map { $base_of{$_} } grep { /\.c$/ } @files;
is("@listed", "@want", 'config lists every source, in layer order');

done_testing();
