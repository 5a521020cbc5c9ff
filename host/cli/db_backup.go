package cli

var (
	dbBackupCmd  = notYet("db backup")
	dbRestoreCmd = notYet("db restore")
)
