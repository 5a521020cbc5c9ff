package cli

var dbRepairCmd = notYet("db repair")
