package cli

func dbCmd(e env, args []string) (int, error) {
	return sub(e, "db", args, map[string]func(env, []string) (int, error){
		"backup":  dbBackupCmd,
		"restore": dbRestoreCmd,
		"repair":  dbRepairCmd,
		"upgrade": dbUpgradeCmd,
	})
}

func updatesCmd(e env, args []string) (int, error) {
	return sub(e, "updates", args, map[string]func(env, []string) (int, error){
		"fetch":  updatesFetchCmd,
		"reject": updatesRejectCmd,
	})
}
