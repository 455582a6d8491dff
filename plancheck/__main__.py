from plancheck.cli.app import main

main()
