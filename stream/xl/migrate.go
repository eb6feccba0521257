package xl

// The messages of xl's migration protocol (`xl migrate` and `xl
// migrate-receive`, tools/xl/xl_migrate.c). The receiver sends
// MigrateBanner (without a NUL) before the sender writes the save image;
// after the image the receiver sends MigrateReady, the sender
// MigratePermission, the receiver MigrateReport followed by one status
// byte (0: its copy runs). On a non-zero status the receiver then sends
// MigratePermission back, allowing the sender to resume its copy. Every
// message but the banner includes its trailing NUL.
const (
	MigrateBanner     = "xl migration receiver ready, send binary domain data.\n"
	MigrateReady      = "domain received, ready to unpause\x00"
	MigratePermission = "domain is yours, you are cleared to unpause\x00"
	MigrateReport     = "my copy unpause results are as follows\x00"
)
