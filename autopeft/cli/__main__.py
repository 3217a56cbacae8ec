from autopeft.cli.app import main

main()
