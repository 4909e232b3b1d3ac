from tcpstress.cli import main

main()
