#!/usr/bin/perl

# The Debian package and make install.
#
# "make deb" builds build/deb/libnginx-mod-http-events_VERSION_ARCH.deb
# with Debian's nginx debhelper sequence; the package must depend on the
# nginx ABI it was built for, carry the module and its load snippet,
# install (the snippet enabled in /etc/nginx/modules-enabled), let
# "nginx -t" of the system configuration load the module, and remove
# cleanly.  Installing a package needs root and dpkg: elsewhere that part
# is skipped with the reason printed.  "make install" is checked into a
# DESTDIR, which needs neither.

use strict;
use warnings;

use File::Basename qw(dirname);
use File::Temp qw(tempdir);
use Test::More;

my $root = dirname(dirname(__FILE__));
my $pkg = 'libnginx-mod-http-events';

my ($version) = `sed -n 's/^#define NGX_HTTP_EVENTS_VERSION *"\\(.*\\)"/\\1/p' \\
                 $root/src/ngx_http_events_version.h` =~ /(\S+)/;
ok($version && $version =~ /^\d+\.\d+\.\d+$/, "version $version in one place");

like(`sed -n '2p' $root/CHANGES`, qr/ngx_http_events_module \Q$version\E\b/,
     'CHANGES starts with this version');

# make install into a DESTDIR
my $dest = tempdir(CLEANUP => 1);
my $out = `make -s -C $root install DESTDIR=$dest PREFIX=/usr 2>&1`;
is($?, 0, 'make install DESTDIR=...') or diag $out;
ok(-f "$dest/usr/lib/nginx/modules/ngx_http_events_module.so",
   'make install: the module');
is(`cat $dest/usr/share/nginx/modules-available/mod-http-events.conf`,
   "load_module modules/ngx_http_events_module.so;\n",
   'make install: the load snippet');

SKIP: {
    skip 'make deb needs dpkg-buildpackage (Debian)', 13
        unless -x '/usr/bin/dpkg-buildpackage';


    $out = `make -s -C $root deb 2>&1`;
    is($?, 0, 'make deb') or diag $out;

    my ($deb) = glob("$root/build/deb/${pkg}_${version}_*.deb");
    ok($deb && -f $deb, "the package file for $version") or last;

    my $info = `dpkg-deb -f $deb Package Version Depends`;
    like($info, qr/^Version: \Q$version\E$/m, 'package version');

    my ($abi) = `dpkg-query -W -f='\${Provides}' nginx 2>/dev/null`
                =~ /(nginx-abi-[\w.~+-]+)/;
    like($info, qr/^Depends:.*\Q$abi\E/m, "depends on $abi")
        if $abi;
    like($info, qr/^Depends:.*libjansson/m, 'depends on libjansson');
    like($info, qr/^Depends:.*libhiredis/m, 'depends on libhiredis');

    my $files = `dpkg-deb -c $deb`;
    like($files, qr{\./usr/lib/nginx/modules/ngx_http_events_module\.so$}m,
         'carries the module');
    like($files,
         qr{\./usr/share/nginx/modules-available/mod-http-events\.conf$}m,
         'carries the load snippet');

    SKIP: {
        skip 'installing the package needs root', 6 if $> != 0;
        skip "$pkg is already installed here; not touching it", 6
            if `dpkg-query -W -f='\${Status}' $pkg 2>/dev/null`
               =~ /install ok installed/;

        $out = dpkg("-i $deb");
        is($?, 0, 'dpkg -i installs it') or diag $out;

        ok(-l '/etc/nginx/modules-enabled/50-mod-http-events.conf',
           'the snippet is enabled on install');

        # the system configuration, as nginx -t sees it, with the module
        like(`/usr/sbin/nginx -T 2>/dev/null`,
             qr{^load_module modules/ngx_http_events_module\.so;}m,
             'the system configuration now loads it');

        $out = `/usr/sbin/nginx -t 2>&1`;
        like($out, qr/test is successful/,
             'nginx -t of the system configuration loads the module')
            or diag $out;

        $out = dpkg("-P $pkg");
        is($?, 0, 'dpkg -P removes it') or diag $out;

        ok(!-e '/usr/lib/nginx/modules/ngx_http_events_module.so'
           && !-e '/etc/nginx/modules-enabled/50-mod-http-events.conf',
           'nothing left behind');
    }
}

done_testing();

# dpkg does not wait for its lock: an apt-get elsewhere on the machine
# would fail the test for nothing, so wait for it, bounded
sub dpkg {
    my ($args) = @_;
    my $out;

    for (1 .. 120) {
        $out = `DEBIAN_FRONTEND=noninteractive dpkg $args 2>&1`;
        return $out unless $? && $out =~ /lock was locked by another/;
        sleep 1;
    }

    return $out;
}
