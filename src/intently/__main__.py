from intently.cli.main import main

main()
