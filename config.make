# Sourced by nginx's auto/make after the module's rules are written: the
# rule for the console's embedded files (see "config").

cat << END                                                  >> $NGX_MAKEFILE

$NGX_OBJS/ngx_http_events_console_files.h: $EVENTS_CONSOLE_FILES \\
		$ngx_addon_dir/clients/console/embed.sh
	sh $ngx_addon_dir/clients/console/embed.sh $EVENTS_CONSOLE_FILES \\
		> \$@.tmp && mv \$@.tmp \$@

END
